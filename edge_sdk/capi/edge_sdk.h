/*
 * edge_sdk.h: the C ABI of edge-sdk (libedgesdk), ABI version 1.0.
 *
 * Decode progressive edge-sdk streams chunk by chunk, classify them in the compressed domain,
 * reconstruct RGB8 pixels, and encode RGB8 images, from C or C++. docs/c-api.md is the manual.
 *
 *   edge-sdk c-lib --out DIR       writes DIR/libedgesdk.so, DIR/edge_sdk.h, DIR/edgesdk.pc
 *   cc app.c $(PKG_CONFIG_PATH=DIR pkg-config --cflags --libs edgesdk) -o app
 *
 * RUNTIME. The library embeds CPython and runs edge-sdk's Python API (edge_sdk.Decoder,
 * DecodeSession, Encoder) inside it. The first call starts the interpreter of the Python
 * environment the library was built from (its executable path is baked in; that environment must
 * stay in place); later calls reuse it. The interpreter is never shut down. If it cannot start, every
 * call returns EDGESDK_ERR_RUNTIME_INIT and edgesdk_last_error() names the cause.
 *
 * ERRORS. Every function that can fail returns an edgesdk_status; EDGESDK_OK (0) is success.
 * After a failure, edgesdk_last_error() returns a message for the calling thread: the message of
 * the Python error (the same text edge-sdk's Python API and CLI print). Output parameters are
 * written only on success. No call aborts the process on bad input: NULL pointers, unknown or
 * already freed handles, damaged streams and missing bundles all come back as status codes.
 *
 * HANDLES. edgesdk_decoder, edgesdk_session and edgesdk_encoder are opaque. A handle stays valid
 * until its *_free call; a freed or never-issued handle gives EDGESDK_ERR_INVALID_HANDLE (handles
 * are never reused within a process). *_free(NULL) does nothing and returns EDGESDK_OK. A session
 * keeps its decoder's models alive, so a decoder may be freed before its sessions.
 *
 * MEMORY. Arrays the caller passes in stay the caller's: nothing keeps a pointer to them after the
 * call returns (fed bytes are copied). Two things are the library's: class-name strings (valid
 * while the decoder or any of its sessions is open) and the encoded stream of edgesdk_encode_rgb8
 * (release it with edgesdk_buffer_free).
 *
 * THREADS. Any function may be called from any thread. Python's GIL serialises the Python work,
 * and each decoder (with all of its sessions) and each encoder has a lock that every call on it
 * takes: calls on one decoder or its sessions run one at a time, never interleaved. Decoders and
 * encoders opened separately run in parallel only where the Python code releases the GIL (inside
 * ONNX Runtime); to decode on N threads, open one decoder per thread. edgesdk_last_error() is per
 * thread.
 *
 * LINKING. Link at build time (the pkg-config file does), or dlopen() with RTLD_GLOBAL: the Python
 * extension modules the interpreter loads (numpy, onnxruntime) look up libpython's symbols globally.
 */
#ifndef EDGE_SDK_H
#define EDGE_SDK_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define EDGESDK_API __attribute__((visibility("default")))
#else
#define EDGESDK_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* EDGESDK_CDEF_BEGIN: the declarations up to EDGESDK_CDEF_END are also read by the library's
 * cffi build (edge_sdk/capi/build.py), so they stay within what cffi's parser accepts. */

/* The ABI this header describes. A library with the same MAJOR and a MINOR >= this one runs a
 * program built with this header; MINOR grows when functions or option fields are added. */
#define EDGESDK_ABI_VERSION_MAJOR 1
#define EDGESDK_ABI_VERSION_MINOR 0

typedef enum edgesdk_status {
    EDGESDK_OK = 0,
    EDGESDK_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad option, k = 0, a threshold outside [0, 1] */
    EDGESDK_ERR_INVALID_HANDLE = 2,   /* NULL, freed, or not a handle of this kind */
    EDGESDK_ERR_BUFFER_TOO_SMALL = 3, /* a caller-owned buffer is smaller than the size the library reported */
    EDGESDK_ERR_NOT_READY = 4,        /* the session has not yet received the header and z section */
    EDGESDK_ERR_BITSTREAM = 5,        /* the stream cannot be decoded (any other bitstream error) */
    EDGESDK_ERR_TRUNCATED = 6,        /* the stream ends inside a part that is required */
    EDGESDK_ERR_CORRUPT = 7,          /* a checksum or structural check failed; bytes past the stream's end */
    EDGESDK_ERR_FOREIGN_STREAM = 8,   /* not an edge-sdk stream, or a format version this library does not read */
    EDGESDK_ERR_MISMATCH = 9,         /* the stream was made with another bundle, entropy tables or prior */
    EDGESDK_ERR_BUNDLE = 10,          /* the bundle is missing, damaged, foreign or of an unsupported version */
    EDGESDK_ERR_BACKEND = 11,         /* the inference backend cannot be opened or cannot run a graph */
    EDGESDK_ERR_IMAGE = 12,           /* the image cannot be encoded (no pixels, too many pixels) */
    EDGESDK_ERR_NO_CONTROLLER = 13,   /* a confidence was asked of a bundle without a decoding controller */
    EDGESDK_ERR_OUT_OF_MEMORY = 14,
    EDGESDK_ERR_RUNTIME_INIT = 15,    /* the embedded Python runtime or edge-sdk could not be started */
    EDGESDK_ERR_INTERNAL = 16,        /* any other failure; the message names the Python exception type */
    EDGESDK_ERR_LIMIT = 17            /* refused before allocating: the image or the stream's latent exceeds max_pixels */
} edgesdk_status;

typedef struct edgesdk_decoder edgesdk_decoder;
typedef struct edgesdk_session edgesdk_session;
typedef struct edgesdk_encoder edgesdk_encoder;

/* Options of edgesdk_decoder_open. Fill with edgesdk_decoder_options_init, then change fields;
 * struct_size lets later ABI minors add fields at the end without breaking older programs. */
typedef struct edgesdk_decoder_options {
    uint32_t struct_size;         /* sizeof(edgesdk_decoder_options) */
    int32_t threads;              /* ONNX Runtime CPU threads; 0: one per core */
    const char *device;           /* "auto" (also NULL), "cpu" or "cuda" */
    const char *engine_dir;       /* NULL, or a folder of TensorRT engines from `edge-sdk build` (then device
                                     and threads are unused) */
    const char *reconstruction;   /* "midpoint" (also NULL) or "conditional_mean": where a partly decoded
                                     latent element is placed */
    uint64_t max_latent_elements; /* the most latent elements a stream's header may ask for; 0: the latent
                                     of a 64 Mi-pixel padded image, the encoder's own limit */
} edgesdk_decoder_options;

/* Options of edgesdk_encoder_open (same conventions as the decoder's). */
typedef struct edgesdk_encoder_options {
    uint32_t struct_size; /* sizeof(edgesdk_encoder_options) */
    int32_t threads;      /* ONNX Runtime CPU threads; 0: one per core */
    const char *device;   /* "auto" (also NULL), "cpu" or "cuda" */
    const char *engine_dir; /* NULL, or a folder of TensorRT engines from `edge-sdk build` */
    const char *prior;    /* NULL: "integer" when the bundle has an integer prior, else "float". Streams
                             with the integer prior decode on any backend; "float" ones only with the
                             encoder's exact backend configuration (docs/prior.md). A decoder needs no
                             such option: every stream's header names its prior. */
    uint32_t short_side;  /* > 0: downscale (never up) so the short side has this many pixels; 0: keep */
} edgesdk_encoder_options;

/* EDGESDK_CDEF_END */

/* (MAJOR << 16) | MINOR of this header; compare with edgesdk_abi_version() at run time. */
#define EDGESDK_ABI_VERSION ((EDGESDK_ABI_VERSION_MAJOR << 16) | EDGESDK_ABI_VERSION_MINOR)
/* edgesdk_session_confident's threshold for "the controller's own default τ". */
#define EDGESDK_DEFAULT_THRESHOLD (-1.0)

/* ---- library ------------------------------------------------------------------------------ */

/* (MAJOR << 16) | MINOR of the loaded library. Needs no Python and never fails. */
EDGESDK_API uint32_t edgesdk_abi_version(void);
/* The edge-sdk package version the library was built from, e.g. "0.1.0". Needs no Python. */
EDGESDK_API const char *edgesdk_package_version(void);
/* The message of the most recent failed call on this thread ("" before any failure). The text is
 * valid until the next failed call on this thread; copy it to keep it. Needs no Python. */
EDGESDK_API const char *edgesdk_last_error(void);
/* The constant's name, e.g. "EDGESDK_ERR_CORRUPT"; "EDGESDK_UNKNOWN_STATUS" for other values. */
EDGESDK_API const char *edgesdk_status_name(edgesdk_status status);
/* Release a buffer the library allocated (edgesdk_encode_rgb8's stream). NULL does nothing. */
EDGESDK_API void edgesdk_buffer_free(uint8_t *buffer);

/* ---- decoder ------------------------------------------------------------------------------ */

/* Defaults: every field zero or NULL except struct_size. */
EDGESDK_API void edgesdk_decoder_options_init(edgesdk_decoder_options *options);
/* Load the bundle in bundle_dir (UTF-8 path) and open its backend. options may be NULL (defaults). */
EDGESDK_API edgesdk_status edgesdk_decoder_open(const char *bundle_dir, const edgesdk_decoder_options *options,
                                                edgesdk_decoder **decoder);
EDGESDK_API edgesdk_status edgesdk_decoder_free(edgesdk_decoder *decoder);
/* How many classes the bundle's classifier has. */
EDGESDK_API edgesdk_status edgesdk_decoder_num_classes(edgesdk_decoder *decoder, size_t *count);
/* The name of class index (a UTF-8 string owned by the decoder; see MEMORY). */
EDGESDK_API edgesdk_status edgesdk_decoder_class_name(edgesdk_decoder *decoder, size_t index, const char **name);
/* *has = 1 when the bundle carries a decoding controller (edge-sdk calibrate), else 0. */
EDGESDK_API edgesdk_status edgesdk_decoder_has_controller(edgesdk_decoder *decoder, int *has);
/* The controller's default τ; EDGESDK_ERR_NO_CONTROLLER without a controller. */
EDGESDK_API edgesdk_status edgesdk_decoder_default_threshold(edgesdk_decoder *decoder, double *threshold);

/* ---- session: one stream being received ----------------------------------------------------- */

EDGESDK_API edgesdk_status edgesdk_session_create(edgesdk_decoder *decoder, edgesdk_session **session);
EDGESDK_API edgesdk_status edgesdk_session_free(edgesdk_session *session);
/* Take the next size bytes of the stream, split anywhere; decodes every level they complete and
 * writes the level now decodable to *level (level may be NULL). A damaged chunk or bytes past the
 * stream's end fail with EDGESDK_ERR_CORRUPT after every level before them has been decoded: the
 * session stays usable at its level. data may be NULL when size is 0. */
EDGESDK_API edgesdk_status edgesdk_session_feed(edgesdk_session *session, const uint8_t *data, size_t size,
                                                int32_t *level);
/* 1 once the header and z section are in (level 0, the prior's means, can be used), else 0. */
EDGESDK_API edgesdk_status edgesdk_session_is_ready(edgesdk_session *session, int *ready);
/* 1 once every byte of the stream is in, else 0. */
EDGESDK_API edgesdk_status edgesdk_session_is_complete(edgesdk_session *session, int *complete);
/* The level decodable now (0 while not ready). */
EDGESDK_API edgesdk_status edgesdk_session_level(edgesdk_session *session, int32_t *level);
/* The stream's deepest level (levels run 0..*levels); -1 until the level table has arrived. */
EDGESDK_API edgesdk_status edgesdk_session_num_levels(edgesdk_session *session, int32_t *levels);
/* Bytes the current level is decoded from (0 while not ready). */
EDGESDK_API edgesdk_status edgesdk_session_bytes_used(edgesdk_session *session, uint64_t *bytes);
/* Bytes fed so far (a partial level's bytes count here, not in bytes_used). */
EDGESDK_API edgesdk_status edgesdk_session_bytes_received(edgesdk_session *session, uint64_t *bytes);
/* The controller's probability that the current level's top-1 class is correct. */
EDGESDK_API edgesdk_status edgesdk_session_confidence(edgesdk_session *session, double *probability);
/* *confident = 1 when that probability is >= threshold (EDGESDK_DEFAULT_THRESHOLD: the controller's
 * default τ): the answer can be trusted and no more bytes are needed. */
EDGESDK_API edgesdk_status edgesdk_session_confident(edgesdk_session *session, double threshold, int *confident);
/* The k (>= 1) most probable classes at the current level, most probable first, into caller-owned
 * arrays of k entries each (any of them may be NULL): class indices, softmax probabilities, and
 * class names (pointers to decoder-owned strings). *count (may be NULL) receives how many entries
 * were written: k, or the number of classes when that is smaller. */
EDGESDK_API edgesdk_status edgesdk_session_classify(edgesdk_session *session, size_t k, int32_t *indices,
                                                    float *probabilities, const char **names, size_t *count);
/* The image's size and the bytes edgesdk_session_reconstruct_rgb8 writes (width * height * 3); any
 * output may be NULL. Known once the session is ready (EDGESDK_ERR_NOT_READY before). */
EDGESDK_API edgesdk_status edgesdk_session_image_size(edgesdk_session *session, uint32_t *width, uint32_t *height,
                                                      size_t *rgb8_bytes);
/* The image at the current level as RGB8, row-major, rows of width * 3 bytes, into pixels (a
 * caller-owned buffer of capacity bytes; EDGESDK_ERR_BUFFER_TOO_SMALL below the reported size). */
EDGESDK_API edgesdk_status edgesdk_session_reconstruct_rgb8(edgesdk_session *session, uint8_t *pixels,
                                                            size_t capacity);

/* ---- encoder ------------------------------------------------------------------------------ */

EDGESDK_API void edgesdk_encoder_options_init(edgesdk_encoder_options *options);
EDGESDK_API edgesdk_status edgesdk_encoder_open(const char *bundle_dir, const edgesdk_encoder_options *options,
                                                edgesdk_encoder **encoder);
EDGESDK_API edgesdk_status edgesdk_encoder_free(edgesdk_encoder *encoder);
/* Encode an RGB8 image (height rows of width * 3 bytes, row_stride bytes apart; 0: width * 3) into
 * a progressive stream. *data receives a library-allocated buffer of *size bytes: release it with
 * edgesdk_buffer_free. */
EDGESDK_API edgesdk_status edgesdk_encode_rgb8(edgesdk_encoder *encoder, const uint8_t *pixels, uint32_t width,
                                               uint32_t height, size_t row_stride, uint8_t **data, size_t *size);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_SDK_H */
