/*
 * c_api_bench.c: the C half of benchmarks/c_api.py. Opens a decoder, then times REPEATS rounds of
 * decode-and-classify through the C ABI (create a session, feed the whole stream, top-5, free),
 * after WARMUP untimed rounds, and the cost of one cheap call (edgesdk_session_level).
 * Prints "round_ms <ms>" per round and "call_us <us>".
 *
 *   c_api_bench BUNDLE STREAM REPEATS WARMUP THREADS
 */
#include <edge_sdk.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void must(edgesdk_status status, const char *what)
{
    if (status != EDGESDK_OK) {
        fprintf(stderr, "error: %s: %s: %s\n", what, edgesdk_status_name(status), edgesdk_last_error());
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s BUNDLE STREAM REPEATS WARMUP THREADS\n", argv[0]);
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc(size);
    if (!data || fread(data, 1, size, f) != size) {
        perror(argv[2]);
        return 1;
    }
    fclose(f);
    int repeats = atoi(argv[3]), warmup = atoi(argv[4]);
    edgesdk_decoder_options options;
    edgesdk_decoder_options_init(&options);
    options.threads = atoi(argv[5]);
    options.device = "cpu";
    edgesdk_decoder *decoder = NULL;
    must(edgesdk_decoder_open(argv[1], &options, &decoder), "open");
    for (int round = 0; round < warmup + repeats; round++) {
        edgesdk_session *session = NULL;
        int32_t level = 0, indices[5];
        float probabilities[5];
        size_t count = 0;
        double t0 = now_ms();
        must(edgesdk_session_create(decoder, &session), "session");
        must(edgesdk_session_feed(session, data, size, &level), "feed");
        must(edgesdk_session_classify(session, 5, indices, probabilities, NULL, &count), "classify");
        must(edgesdk_session_free(session), "free");
        double t1 = now_ms();
        if (round >= warmup)
            printf("round_ms %.6f\n", t1 - t0);
    }
    edgesdk_session *session = NULL;
    int32_t level = 0;
    must(edgesdk_session_create(decoder, &session), "session");
    const int calls = 20000;
    double t0 = now_ms();
    for (int i = 0; i < calls; i++)
        must(edgesdk_session_level(session, &level), "level");
    printf("call_us %.6f\n", (now_ms() - t0) * 1e3 / calls);
    edgesdk_session_free(session);
    edgesdk_decoder_free(decoder);
    free(data);
    return 0;
}
