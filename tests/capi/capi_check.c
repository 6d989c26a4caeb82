/*
 * capi_check.c: the C side of tests/capi/test_capi.py, three modes.
 *
 *   capi_check errors BUNDLE STREAM      one line per misuse: "case<TAB>STATUS_NAME<TAB>last error"
 *   capi_check loop BUNDLE STREAM N      N rounds of open / sessions / feed / classify / reconstruct /
 *                                        encode / error paths / free; "rss ROUND KB" after each round
 *   capi_check encode BUNDLE RGB W H OUT encode W x H RGB8 bytes from file RGB into the stream file OUT
 *   capi_check threads BUNDLE STREAM     decode on 6 threads at once (3 own decoders, 3 sessions of one
 *                                        shared decoder) and poll one session from a second thread while
 *                                        a first feeds it; "threads<TAB>top1<TAB>level" when all agree
 *
 * Exit status 0, or 3 when a call that must succeed fails (the line names it).
 */
#include <edge_sdk.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(n > 0 ? (size_t)n : 1);
    if (!data || fread(data, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *size = (size_t)n;
    return data;
}

static void must(edgesdk_status status, const char *what)
{
    if (status != EDGESDK_OK) {
        printf("FAILED\t%s\t%s\t%s\n", what, edgesdk_status_name(status), edgesdk_last_error());
        exit(3);
    }
}

static void show(const char *name, edgesdk_status status)
{
    printf("%s\t%s\t%s\n", name, edgesdk_status_name(status), status == EDGESDK_OK ? "" : edgesdk_last_error());
}

static edgesdk_decoder *open_decoder(const char *bundle)
{
    edgesdk_decoder_options options;
    edgesdk_decoder_options_init(&options);
    options.threads = 1;
    edgesdk_decoder *decoder = NULL;
    must(edgesdk_decoder_open(bundle, &options, &decoder), "decoder_open");
    return decoder;
}

static int errors(const char *bundle, const uint8_t *stream, size_t size)
{
    edgesdk_decoder *decoder = NULL, *none = NULL;
    edgesdk_session *session = NULL, *fresh = NULL;
    edgesdk_decoder_options options;
    int32_t level = 0, indices[4];
    size_t count = 0, image_bytes = 0;
    double p = 0;
    const char *name = NULL;

    show("open_null_path", edgesdk_decoder_open(NULL, NULL, &none));
    show("open_null_out", edgesdk_decoder_open(bundle, NULL, NULL));
    show("open_missing_bundle", edgesdk_decoder_open("/nonexistent/edge-sdk-bundle", NULL, &none));
    edgesdk_decoder_options_init(&options);
    options.struct_size = 3;
    show("open_bad_struct_size", edgesdk_decoder_open(bundle, &options, &none));
    edgesdk_decoder_options_init(&options);
    options.device = "tpu";
    show("open_bad_device", edgesdk_decoder_open(bundle, &options, &none));
    edgesdk_decoder_options_init(&options);
    options.reconstruction = "median";
    show("open_bad_reconstruction", edgesdk_decoder_open(bundle, &options, &none));

    decoder = open_decoder(bundle);
    show("class_name_out_of_range", edgesdk_decoder_class_name(decoder, 1u << 30, &name));
    show("default_threshold_no_controller", edgesdk_decoder_default_threshold(decoder, &p));
    must(edgesdk_session_create(decoder, &session), "session_create");
    show("classify_before_header", edgesdk_session_classify(session, 3, indices, NULL, NULL, &count));
    show("image_size_before_header", edgesdk_session_image_size(session, NULL, NULL, &image_bytes));
    show("reconstruct_before_header", edgesdk_session_reconstruct_rgb8(session, (uint8_t *)indices, sizeof indices));
    show("feed_null_data", edgesdk_session_feed(session, NULL, 5, &level));
    show("feed_empty", edgesdk_session_feed(session, NULL, 0, &level));
    must(edgesdk_session_feed(session, stream, size, &level), "feed");
    show("classify_k0", edgesdk_session_classify(session, 0, indices, NULL, NULL, &count));
    show("confidence_no_controller", edgesdk_session_confidence(session, &p));
    show("confident_no_controller", edgesdk_session_confident(session, 0.5, &(int){0}));
    must(edgesdk_session_image_size(session, NULL, NULL, &image_bytes), "image_size");
    uint8_t *pixels = malloc(image_bytes);
    show("reconstruct_small_buffer", edgesdk_session_reconstruct_rgb8(session, pixels, image_bytes - 1));
    show("reconstruct_null_buffer", edgesdk_session_reconstruct_rgb8(session, NULL, image_bytes));
    show("reconstruct_ok", edgesdk_session_reconstruct_rgb8(session, pixels, image_bytes));
    free(pixels);
    show("feed_past_end", edgesdk_session_feed(session, stream, 7, &level));
    show("level_after_past_end", edgesdk_session_level(session, &level));
    printf("level\t%d\n", level);

    must(edgesdk_session_create(decoder, &fresh), "session_create");
    show("feed_foreign", edgesdk_session_feed(fresh, (const uint8_t *)"hello world, not a stream", 25, &level));
    must(edgesdk_session_free(fresh), "session_free");
    show("feed_freed_session", edgesdk_session_feed(fresh, stream, size, &level));
    show("free_freed_session", edgesdk_session_free(fresh));
    show("decoder_as_session", edgesdk_session_feed((edgesdk_session *)decoder, stream, size, &level));
    show("session_null", edgesdk_session_level(NULL, &level));
    show("level_null_out", edgesdk_session_level(session, NULL));
    show("free_null", edgesdk_session_free(NULL));

    /* a session outlives its decoder's handle: the models stay alive until the last is freed */
    show("decoder_free", edgesdk_decoder_free(decoder));
    show("classify_after_decoder_free", edgesdk_session_classify(session, 3, indices, NULL, NULL, &count));
    show("session_free", edgesdk_session_free(session));
    show("decoder_free_again", edgesdk_decoder_free(decoder));

    edgesdk_encoder *encoder = NULL;
    uint8_t *data = NULL;
    size_t data_size = 0;
    uint8_t rgb[3 * 8 * 8] = {0};
    edgesdk_encoder_options eoptions;
    edgesdk_encoder_options_init(&eoptions);
    eoptions.threads = 1;
    eoptions.prior = "fancy";
    show("encoder_bad_prior", edgesdk_encoder_open(bundle, &eoptions, &encoder));
    eoptions.prior = NULL;
    must(edgesdk_encoder_open(bundle, &eoptions, &encoder), "encoder_open");
    show("encode_no_pixels", edgesdk_encode_rgb8(encoder, rgb, 0, 8, 0, &data, &data_size));
    show("encode_short_stride", edgesdk_encode_rgb8(encoder, rgb, 8, 8, 5, &data, &data_size));
    show("encode_null_out", edgesdk_encode_rgb8(encoder, rgb, 8, 8, 0, NULL, &data_size));
    show("encode_ok", edgesdk_encode_rgb8(encoder, rgb, 8, 8, 0, &data, &data_size));
    edgesdk_buffer_free(data);
    show("encoder_free", edgesdk_encoder_free(encoder));
    return 0;
}

static long rss_kb(void)
{
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2)
        return -1;
    fclose(f);
    return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int loop(const char *bundle, const uint8_t *stream, size_t size, int rounds)
{
    uint8_t rgb[3 * 48 * 40];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 7 + (i / 144) * 13);
    for (int round = 0; round < rounds; round++) {
        edgesdk_decoder *decoder = open_decoder(bundle);
        for (int s = 0; s < 4; s++) {
            edgesdk_session *session = NULL;
            int32_t level = 0, indices[5];
            float probabilities[5];
            const char *names[5];
            size_t count = 0, image_bytes = 0;
            must(edgesdk_session_create(decoder, &session), "session_create");
            must(edgesdk_session_feed(session, stream, size / 2, &level), "feed");
            must(edgesdk_session_classify(session, 5, indices, probabilities, names, &count), "classify");
            must(edgesdk_session_feed(session, stream + size / 2, size - size / 2, &level), "feed");
            must(edgesdk_session_classify(session, 5, indices, probabilities, names, &count), "classify");
            must(edgesdk_session_image_size(session, NULL, NULL, &image_bytes), "image_size");
            uint8_t *pixels = malloc(image_bytes);
            must(edgesdk_session_reconstruct_rgb8(session, pixels, image_bytes), "reconstruct");
            free(pixels);
            /* the failing paths must release what they touched too */
            edgesdk_session_feed(session, stream, 16, &level);
            edgesdk_session_reconstruct_rgb8(session, NULL, 1);
            must(edgesdk_session_free(session), "session_free");
            edgesdk_session_level(session, &level);
        }
        edgesdk_decoder *none = NULL;
        edgesdk_decoder_open("/nonexistent/edge-sdk-bundle", NULL, &none);
        must(edgesdk_decoder_free(decoder), "decoder_free");

        edgesdk_encoder_options options;
        edgesdk_encoder_options_init(&options);
        options.threads = 1;
        edgesdk_encoder *encoder = NULL;
        uint8_t *data = NULL;
        size_t data_size = 0;
        must(edgesdk_encoder_open(bundle, &options, &encoder), "encoder_open");
        must(edgesdk_encode_rgb8(encoder, rgb, 48, 40, 0, &data, &data_size), "encode");
        edgesdk_buffer_free(data);
        must(edgesdk_encoder_free(encoder), "encoder_free");
        printf("rss\t%d\t%ld\n", round, rss_kb());
        fflush(stdout);
    }
    return 0;
}

struct job {
    const char *bundle;
    const uint8_t *stream;
    size_t size;
    edgesdk_decoder *shared; /* NULL: the job opens its own decoder */
    int32_t top1, level;
};

/* Decode the stream three times in 64-byte pieces; keep the last top-1 and level. */
static void *decode_job(void *arg)
{
    struct job *job = arg;
    edgesdk_decoder *decoder = job->shared ? job->shared : open_decoder(job->bundle);
    for (int round = 0; round < 3; round++) {
        edgesdk_session *session = NULL;
        size_t count = 0;
        must(edgesdk_session_create(decoder, &session), "session_create");
        for (size_t at = 0; at < job->size; at += 64) {
            size_t n = job->size - at < 64 ? job->size - at : 64;
            must(edgesdk_session_feed(session, job->stream + at, n, &job->level), "feed");
        }
        must(edgesdk_session_classify(session, 1, &job->top1, NULL, NULL, &count), "classify");
        must(edgesdk_session_free(session), "session_free");
    }
    if (!job->shared)
        must(edgesdk_decoder_free(decoder), "decoder_free");
    return NULL;
}

struct poll {
    edgesdk_session *session;
    volatile int done;
    volatile int polls;
    int regressions;
};

/* Read the level of a session another thread is feeding: it may only grow. */
static void *poll_job(void *arg)
{
    struct poll *poll = arg;
    int32_t last = 0, level = 0;
    while (!poll->done) {
        must(edgesdk_session_level(poll->session, &level), "level");
        poll->regressions += level < last;
        last = level;
        poll->polls++;
        usleep(100); /* a spinning poller would hold the GIL in turns of 5 ms against the feeder */
    }
    return NULL;
}

static int threads(const char *bundle, const uint8_t *stream, size_t size)
{
    struct job reference = {bundle, stream, size, NULL, -1, -1};
    decode_job(&reference);
    edgesdk_decoder *shared = open_decoder(bundle);
    struct job jobs[6];
    pthread_t ids[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (struct job){bundle, stream, size, i < 3 ? NULL : shared, -1, -1};
        pthread_create(&ids[i], NULL, decode_job, &jobs[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(ids[i], NULL);
        if (jobs[i].top1 != reference.top1 || jobs[i].level != reference.level) {
            printf("FAILED\tthread %d: top1 %d level %d, alone: top1 %d level %d\n", i, jobs[i].top1, jobs[i].level,
                   reference.top1, reference.level);
            return 3;
        }
    }
    edgesdk_session *session = NULL;
    struct poll poll = {NULL, 0, 0, 0};
    pthread_t poller;
    int32_t level = 0;
    must(edgesdk_session_create(shared, &session), "session_create");
    poll.session = session;
    pthread_create(&poller, NULL, poll_job, &poll);
    while (poll.polls == 0) /* on a loaded machine the poller may start late: let it poll first */
        usleep(100);
    for (size_t at = 0; at < size; at += 8)
        must(edgesdk_session_feed(session, stream + at, size - at < 8 ? size - at : 8, &level), "feed");
    poll.done = 1;
    pthread_join(poller, NULL);
    if (poll.regressions || level != reference.level || poll.polls == 0) {
        printf("FAILED\tpolled level went back %d times in %d polls; final level %d\n", poll.regressions, poll.polls,
               level);
        return 3;
    }
    must(edgesdk_session_free(session), "session_free");
    must(edgesdk_decoder_free(shared), "decoder_free");
    printf("threads\t%d\t%d\n", reference.top1, reference.level);
    return 0;
}

static int encode(const char *bundle, const char *rgb_path, int width, int height, const char *out_path)
{
    size_t size = 0, data_size = 0;
    uint8_t *rgb = read_file(rgb_path, &size), *data = NULL;
    edgesdk_encoder *encoder = NULL;
    edgesdk_encoder_options options;
    edgesdk_encoder_options_init(&options);
    options.threads = 1;
    must(edgesdk_encoder_open(bundle, &options, &encoder), "encoder_open");
    must(edgesdk_encode_rgb8(encoder, rgb, (uint32_t)width, (uint32_t)height, 0, &data, &data_size), "encode");
    FILE *out = fopen(out_path, "wb");
    if (!out || fwrite(data, 1, data_size, out) != data_size || fclose(out) != 0) {
        perror(out_path);
        return 1;
    }
    edgesdk_buffer_free(data);
    must(edgesdk_encoder_free(encoder), "encoder_free");
    free(rgb);
    return 0;
}

int main(int argc, char **argv)
{
    size_t size = 0;
    if (argc == 4 && !strcmp(argv[1], "errors")) {
        uint8_t *stream = read_file(argv[3], &size);
        return errors(argv[2], stream, size);
    }
    if (argc == 5 && !strcmp(argv[1], "loop")) {
        uint8_t *stream = read_file(argv[3], &size);
        return loop(argv[2], stream, size, atoi(argv[4]));
    }
    if (argc == 4 && !strcmp(argv[1], "threads")) {
        uint8_t *stream = read_file(argv[3], &size);
        return threads(argv[2], stream, size);
    }
    if (argc == 7 && !strcmp(argv[1], "encode"))
        return encode(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), argv[6]);
    fprintf(stderr, "usage: %s errors BUNDLE STREAM | loop BUNDLE STREAM N | encode BUNDLE RGB W H OUT | threads BUNDLE STREAM\n", argv[0]);
    return 1;
}
