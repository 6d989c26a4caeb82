/*
 * decode.c: stream an edge-sdk stream into the decoder chunk by chunk, print the answer at each
 * new level (one JSON object per line), and stop reading once the bundle's controller trusts it.
 *
 *   edge-sdk c-lib --out sdk
 *   cc examples/c/decode.c $(PKG_CONFIG_PATH=sdk pkg-config --cflags --libs edgesdk) -o decode
 *   ./decode BUNDLE_DIR photo.eds            or:   cat photo.eds | ./decode BUNDLE_DIR -
 *
 * Options: --chunk BYTES (read size, default 4096), --top K (default 3), --threshold T (default:
 * the controller's own), --threads N, --device auto|cpu|cuda, --ppm PATH (write the image at the
 * final level). Exit status 0 on success, 2 on an edge-sdk error (its name and message on stderr),
 * 1 on a usage or I/O error.
 */
#include <edge_sdk.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int report(const char *what, edgesdk_status status)
{
    fprintf(stderr, "error: %s: %s: %s\n", what, edgesdk_status_name(status), edgesdk_last_error());
    return 2;
}

static void print_json_string(const char *text)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf("\\%c", *c);
        else if (*c < 0x20)
            printf("\\u%04x", *c);
        else
            putchar(*c);
    }
    putchar('"');
}

/* One line: the level, its bytes and the top k; the controller's confidence when there is one. */
static edgesdk_status print_answer(edgesdk_session *session, size_t k, int has_controller, int is_final,
                                   const char *stopped)
{
    int32_t level = 0, levels = 0, indices[64];
    uint64_t used = 0, received = 0;
    float probabilities[64];
    const char *names[64];
    size_t count = 0;
    double confidence = 0.0;
    edgesdk_status status;

    if ((status = edgesdk_session_classify(session, k, indices, probabilities, names, &count)) != EDGESDK_OK)
        return status;
    edgesdk_session_level(session, &level);
    edgesdk_session_num_levels(session, &levels);
    edgesdk_session_bytes_used(session, &used);
    edgesdk_session_bytes_received(session, &received);
    printf("{\"level\": %d, \"levels\": %d, \"bytes_used\": %llu, \"bytes_received\": %llu, \"top\": [", level,
           levels, (unsigned long long)used, (unsigned long long)received);
    for (size_t i = 0; i < count; i++) {
        printf("%s{\"index\": %d, \"name\": ", i ? ", " : "", indices[i]);
        print_json_string(names[i]);
        printf(", \"prob\": %.9g}", probabilities[i]);
    }
    printf("]");
    if (has_controller) {
        if ((status = edgesdk_session_confidence(session, &confidence)) != EDGESDK_OK)
            return status;
        printf(", \"confidence\": %.17g", confidence);
    }
    if (is_final)
        printf(", \"final\": true, \"stopped\": \"%s\"", stopped);
    printf("}\n");
    fflush(stdout);
    return EDGESDK_OK;
}

/* 0, or the exit status after reporting why the image could not be written. */
static int write_ppm(edgesdk_session *session, const char *path)
{
    uint32_t width = 0, height = 0;
    size_t size = 0;
    edgesdk_status status = edgesdk_session_image_size(session, &width, &height, &size);
    if (status != EDGESDK_OK)
        return report("image size", status);
    uint8_t *pixels = malloc(size);
    if (!pixels) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    int rc = 0;
    if ((status = edgesdk_session_reconstruct_rgb8(session, pixels, size)) != EDGESDK_OK) {
        rc = report("reconstruct", status);
    } else {
        FILE *out = fopen(path, "wb");
        if (!out || fprintf(out, "P6\n%u %u\n255\n", width, height) < 0 || fwrite(pixels, 1, size, out) != size) {
            perror(path);
            rc = 1;
        }
        if (out && fclose(out) != 0 && rc == 0) {
            perror(path);
            rc = 1;
        }
    }
    free(pixels);
    return rc;
}

int main(int argc, char **argv)
{
    const char *bundle = NULL, *input = "-", *ppm = NULL, *device = "auto";
    size_t chunk = 4096, k = 3;
    double threshold = EDGESDK_DEFAULT_THRESHOLD;
    int threads = 0, positional = 0;

    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--chunk") && value) chunk = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--top") && value) k = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threshold") && value) threshold = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--threads") && value) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && value) device = argv[++i];
        else if (!strcmp(argv[i], "--ppm") && value) ppm = argv[++i];
        else if (positional == 0 && (argv[i][0] != '-' || !argv[i][1])) { bundle = argv[i]; positional++; }
        else if (positional == 1 && (argv[i][0] != '-' || !argv[i][1])) { input = argv[i]; positional++; }
        else { bundle = NULL; break; }
    }
    if (!bundle || chunk == 0 || k == 0 || k > 64) {
        fprintf(stderr, "usage: %s BUNDLE_DIR [STREAM|-] [--chunk BYTES] [--top K<=64] [--threshold T] "
                        "[--threads N] [--device auto|cpu|cuda] [--ppm PATH]\n", argv[0]);
        return 1;
    }
    if (edgesdk_abi_version() >> 16 != EDGESDK_ABI_VERSION_MAJOR) {
        fprintf(stderr, "error: libedgesdk has ABI %u.%u, this program was built for %d.x\n",
                edgesdk_abi_version() >> 16, edgesdk_abi_version() & 0xffff, EDGESDK_ABI_VERSION_MAJOR);
        return 1;
    }
    FILE *in = strcmp(input, "-") ? fopen(input, "rb") : stdin;
    if (!in) {
        perror(input);
        return 1;
    }

    edgesdk_decoder_options options;
    edgesdk_decoder_options_init(&options);
    options.threads = threads;
    options.device = device;
    edgesdk_decoder *decoder = NULL;
    edgesdk_session *session = NULL;
    edgesdk_status status;
    int rc = 0, has_controller = 0, ready = 0, confident = 0;
    int32_t level = 0, shown = -1;
    uint8_t *buffer = malloc(chunk);
    const char *stopped = "end of stream";

    if (!buffer) {
        fprintf(stderr, "error: out of memory\n");
        rc = 1;
        goto done;
    }
    if ((status = edgesdk_decoder_open(bundle, &options, &decoder)) != EDGESDK_OK) {
        rc = report("open the bundle", status);
        goto done;
    }
    edgesdk_decoder_has_controller(decoder, &has_controller);
    if ((status = edgesdk_session_create(decoder, &session)) != EDGESDK_OK) {
        rc = report("create a session", status);
        goto done;
    }
    for (size_t n; !confident && (n = fread(buffer, 1, chunk, in)) > 0;) {
        if ((status = edgesdk_session_feed(session, buffer, n, &level)) != EDGESDK_OK) {
            rc = report("feed", status);
            goto done;
        }
        edgesdk_session_is_ready(session, &ready);
        if (!ready || level == shown)
            continue;
        shown = level;
        if (has_controller) {
            if ((status = edgesdk_session_confident(session, threshold, &confident)) != EDGESDK_OK) {
                rc = report("ask the controller", status);
                goto done;
            }
            if (confident) {
                stopped = "confident";
                break; /* the answer is trusted: the rest of the stream is never read */
            }
        }
        if ((status = print_answer(session, k, has_controller, 0, NULL)) != EDGESDK_OK) {
            rc = report("classify", status);
            goto done;
        }
    }
    if (ferror(in)) {
        perror(input);
        rc = 1;
        goto done;
    }
    /* The final answer; before the header and z section it is the library's "not ready" error. */
    if ((status = print_answer(session, k, has_controller, 1, stopped)) != EDGESDK_OK) {
        rc = report("classify", status);
        goto done;
    }
    if (ppm)
        rc = write_ppm(session, ppm);

done:
    edgesdk_session_free(session);
    edgesdk_decoder_free(decoder);
    free(buffer);
    if (in != stdin)
        fclose(in);
    return rc;
}
