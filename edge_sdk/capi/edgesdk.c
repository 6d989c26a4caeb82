/*
 * The C half of libedgesdk (edge_sdk/capi/build.py compiles it with cffi's embedding mode).
 *
 * Each public function that can fail is a generated wrapper (build.py appends them) around an
 * `extern "Python"` function of edge_sdk/capi/glue.py. The wrapper first starts the embedded
 * interpreter itself, pointing it at the Python environment the library was built from, so that
 * the interpreter finds that environment's site-packages (a virtualenv's too): cffi's own start-up
 * would use the base installation's defaults and could not even import cffi from a virtualenv.
 *
 * The glue answers every call with EDGESDK__REPLIED | status. cffi answers 0 when the glue could
 * not run at all (its start-up code failed), and 0 would otherwise read as EDGESDK_OK: the flag
 * lets the wrapper tell the two apart and report EDGESDK_ERR_RUNTIME_INIT instead.
 *
 * build.py prepends two definitions before this text:
 *   static const char edgesdk__python_executable[];  the interpreter the library was built with
 *   static const char edgesdk__package_version[];    edge-sdk's version at build time
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge_sdk.h"

#define EDGESDK__REPLIED 16384

/* The per-thread message edgesdk_last_error() returns. */
static _Thread_local char edgesdk__error[4096];
/* Why the runtime could not start: written once, before edgesdk__start_failed or cffi's failure
 * is observed, and only read afterwards. */
static char edgesdk__start_error[4096];
static int edgesdk__start_failed;
static pthread_once_t edgesdk__start_once = PTHREAD_ONCE_INIT;

void edgesdk__set_error(const char *message)
{
    snprintf(edgesdk__error, sizeof edgesdk__error, "%s", message ? message : "");
}

/* Called by the embedded start-up code (build.py's init code) when importing the glue fails. */
void edgesdk__set_start_error(const char *message)
{
    snprintf(edgesdk__start_error, sizeof edgesdk__start_error, "%s", message ? message : "");
}

/* The glue allocates edgesdk_encode_rgb8's buffer here so that edgesdk_buffer_free's free() matches. */
void *edgesdk__alloc(size_t size)
{
    return malloc(size ? size : 1);
}

static void edgesdk__start_python(void)
{
    PyConfig config;
    PyStatus status;

    if (Py_IsInitialized())
        return; /* the host is a Python process (ctypes), or another embedding started it */
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* SIGINT and friends belong to the host program */
    config.parse_argv = 0;
    /* The program name is what CPython locates its prefix from: a virtualenv's python finds the
     * pyvenv.cfg beside it and so that environment's site-packages and .pth files. */
    status = PyConfig_SetBytesString(&config, &config.program_name, edgesdk__python_executable);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        snprintf(edgesdk__start_error, sizeof edgesdk__start_error,
                 "cannot start the embedded Python of %s: %s%s%s", edgesdk__python_executable,
                 status.func ? status.func : "", status.func ? ": " : "",
                 status.err_msg ? status.err_msg : "the interpreter asked to exit");
        edgesdk__start_failed = 1;
        return;
    }
    PyEval_SaveThread(); /* release the GIL: every call takes it again through cffi (PyGILState_Ensure) */
}

/* The status a generated wrapper returns for the glue's reply. */
static edgesdk_status edgesdk__reply(int32_t reply)
{
    if (!(reply & EDGESDK__REPLIED)) {
        snprintf(edgesdk__error, sizeof edgesdk__error,
                 "edge-sdk's Python runtime did not start: %.3900s (the traceback is on stderr)",
                 edgesdk__start_error[0] ? edgesdk__start_error
                                         : "the embedded interpreter could not run the library's start-up code");
        return EDGESDK_ERR_RUNTIME_INIT;
    }
    return (edgesdk_status)(reply & ~EDGESDK__REPLIED);
}

/* 0 when the interpreter is up; otherwise the last error is set. */
static int edgesdk__start(void)
{
    pthread_once(&edgesdk__start_once, edgesdk__start_python);
    if (edgesdk__start_failed) {
        edgesdk__set_error(edgesdk__start_error);
        return -1;
    }
    return 0;
}

EDGESDK_API uint32_t edgesdk_abi_version(void)
{
    return EDGESDK_ABI_VERSION;
}

EDGESDK_API const char *edgesdk_package_version(void)
{
    return edgesdk__package_version;
}

EDGESDK_API const char *edgesdk_last_error(void)
{
    return edgesdk__error;
}

EDGESDK_API const char *edgesdk_status_name(edgesdk_status status)
{
    switch (status) {
    case EDGESDK_OK: return "EDGESDK_OK";
    case EDGESDK_ERR_INVALID_ARGUMENT: return "EDGESDK_ERR_INVALID_ARGUMENT";
    case EDGESDK_ERR_INVALID_HANDLE: return "EDGESDK_ERR_INVALID_HANDLE";
    case EDGESDK_ERR_BUFFER_TOO_SMALL: return "EDGESDK_ERR_BUFFER_TOO_SMALL";
    case EDGESDK_ERR_NOT_READY: return "EDGESDK_ERR_NOT_READY";
    case EDGESDK_ERR_BITSTREAM: return "EDGESDK_ERR_BITSTREAM";
    case EDGESDK_ERR_TRUNCATED: return "EDGESDK_ERR_TRUNCATED";
    case EDGESDK_ERR_CORRUPT: return "EDGESDK_ERR_CORRUPT";
    case EDGESDK_ERR_FOREIGN_STREAM: return "EDGESDK_ERR_FOREIGN_STREAM";
    case EDGESDK_ERR_MISMATCH: return "EDGESDK_ERR_MISMATCH";
    case EDGESDK_ERR_BUNDLE: return "EDGESDK_ERR_BUNDLE";
    case EDGESDK_ERR_BACKEND: return "EDGESDK_ERR_BACKEND";
    case EDGESDK_ERR_IMAGE: return "EDGESDK_ERR_IMAGE";
    case EDGESDK_ERR_NO_CONTROLLER: return "EDGESDK_ERR_NO_CONTROLLER";
    case EDGESDK_ERR_OUT_OF_MEMORY: return "EDGESDK_ERR_OUT_OF_MEMORY";
    case EDGESDK_ERR_RUNTIME_INIT: return "EDGESDK_ERR_RUNTIME_INIT";
    case EDGESDK_ERR_INTERNAL: return "EDGESDK_ERR_INTERNAL";
    case EDGESDK_ERR_LIMIT: return "EDGESDK_ERR_LIMIT";
    }
    return "EDGESDK_UNKNOWN_STATUS";
}

EDGESDK_API void edgesdk_buffer_free(uint8_t *buffer)
{
    free(buffer);
}

EDGESDK_API void edgesdk_decoder_options_init(edgesdk_decoder_options *options)
{
    if (!options)
        return;
    memset(options, 0, sizeof *options);
    options->struct_size = (uint32_t)sizeof *options;
}

EDGESDK_API void edgesdk_encoder_options_init(edgesdk_encoder_options *options)
{
    if (!options)
        return;
    memset(options, 0, sizeof *options);
    options->struct_size = (uint32_t)sizeof *options;
}

/* ---- generated by build.py: the glue's prototypes and one wrapper per fallible function ---- */
