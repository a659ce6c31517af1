/* avx2_mmm_i32_8x8's i8i8 loops, old against new, on one 8x8 tile (run.sh builds it).
 *
 * Links the kernel tract-linalg's build script rendered (new.S) and a copy whose i8i8 entry
 * jumps straight to the exact loop, the loop the kernel had before kith issue 13's second
 * step (old.S). Checks both against a plain C product (B with and without -128; argument 4
 * picks the data: 0 random full range, 1-3 the extremes), then times them interleaved: the
 * best of 2000 short samples, so that a loaded machine still gives the unloaded speed.
 * Usage: bench K CALLS_PER_SAMPLE [c|x: check or skip the check] [MODE] */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* tract-linalg's FusedKerSpec<i32>: #[repr(C, usize)], 40 bytes; tags are the variant
 * indices (Done 0, Clear 1, Store 27, AddMatMul 28). */
typedef struct { uint64_t tag, a, b, c, d; } op;
long avx2_mmm_i32_8x8_0_23_9(op *);
long old_avx2_mmm_i32_8x8_0_23_9(op *);
typedef long (*kfn)(op *);
static uint32_t x = 12345;
static int8_t rnd(int with_min) { x = x * 1664525u + 1013904223u; int8_t v = (int8_t)(x >> 24); return (v == -128 && !with_min) ? 127 : v; }
static void run(kfn f, const int8_t *a, const int8_t *b, size_t k, int32_t *c) {
  op ops[4] = {{1,0,0,0,0},{28,k,(uint64_t)a,(uint64_t)b,1},{27,(uint64_t)c,32,4,4},{0,0,0,0,0}};
  if (f(ops)) { fprintf(stderr, "kernel error\n"); exit(1); }
}
static double now() { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
  size_t k = argc > 1 ? atoi(argv[1]) : 512; int reps = argc > 2 ? atoi(argv[2]) : 20000;
  int8_t *a = aligned_alloc(64, k * 8), *b = aligned_alloc(64, k * 8), *b2 = aligned_alloc(64, k * 8);
  int mode = argc > 4 ? atoi(argv[4]) : 0;
  for (size_t i = 0; i < k * 8; i++) { a[i] = rnd(1); b[i] = rnd(0); b2[i] = b[i]; }
  if (mode == 1) for (size_t i = 0; i < k * 8; i++) { a[i] = -128; b[i] = -127; b2[i] = -128; }
  if (mode == 2) for (size_t i = 0; i < k * 8; i++) { a[i] = -128; b[i] = 127; b2[i] = b[i]; }
  if (mode == 3) for (size_t i = 0; i < k * 8; i++) { a[i] = 127; b[i] = -127; b2[i] = -128; }
  b2[k * 4 + 3] = -128;
  int32_t ref[64], c[64];
  for (int v = 0; v < 2; v++) {
    const int8_t *bb = v ? b2 : b;
    for (int m = 0; m < 8; m++) for (int n = 0; n < 8; n++) { int32_t s = 0;
      for (size_t kb = 0; kb < k / 4; kb++) for (int t = 0; t < 4; t++) s += a[kb*32 + m*4 + t] * bb[kb*32 + n*4 + t];
      ref[m*8+n] = s; }
    kfn fs[2] = {old_avx2_mmm_i32_8x8_0_23_9, avx2_mmm_i32_8x8_0_23_9};
    for (int i = 0; i < 2; i++) { memset(c, 0, sizeof c); run(fs[i], a, bb, k, c);
      if ((argc < 4 || argv[3][0] != 'x') && memcmp(c, ref, sizeof c)) { printf("MISMATCH kernel %d b%s\n", i, v ? " with -128" : ""); return 1; } }
  }
  printf("exact: old and new equal the reference, B with and without -128\n");
  const char *names[3] = {"previous (exact loop only)", "new, fast loop", "new, B with -128 (fallback)"};
  double best[3] = {1e9, 1e9, 1e9};
  for (int round = 0; round < 2000; round++)
    for (int i = 0; i < 3; i++) {
      kfn f = i ? avx2_mmm_i32_8x8_0_23_9 : old_avx2_mmm_i32_8x8_0_23_9; const int8_t *bb = i == 2 ? b2 : b;
      double t0 = now(); for (int r = 0; r < reps; r++) run(f, a, bb, k, c); double t = now() - t0;
      if (t < best[i]) best[i] = t;
    }
  for (int i = 0; i < 3; i++) printf("%-30s k=%zu: %.2f GMAC/s (best of 2000 samples of %d calls)\n", names[i], k, 64.0 * k * reps / best[i] / 1e9, reps);
  printf("new / previous speed: %.2f\n", best[0] / best[1]);
  return 0;
}
