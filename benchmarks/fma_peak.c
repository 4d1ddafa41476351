/* Float32 FMA peak of this CPU: every core runs independent 256-bit fused multiply-adds.
 * Usage: fma_peak THREADS  ->  prints GFLOP/s (2 FLOP per lane per FMA). */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12 /* independent accumulators: more than FMA latency x FMA ports */
#define ITERATIONS 200000000L

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *fma_loop(void *result) {
    __m256 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps(i * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long k = 0; k < ITERATIONS; k++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float lanes[8], sum = 0;
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_ps(lanes, acc[i]);
        sum += lanes[0];
    }
    *(float *)result = sum; /* keeps the loop from being optimised away */
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    pthread_t ids[256];
    float sums[256];
    if (threads < 1 || threads > 256) return 2;
    double start = seconds();
    for (int t = 0; t < threads; t++) pthread_create(&ids[t], NULL, fma_loop, &sums[t]);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    double elapsed = seconds() - start;
    printf("%.1f\n", threads * (double)ITERATIONS * CHAINS * 8 * 2 / elapsed / 1e9);
    return sums[0] == 12345.0f; /* never true; uses the result */
}
