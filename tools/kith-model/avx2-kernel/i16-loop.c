// The AVX2 int8 tile's inner loop in two forms, timed side by side (kith issue 13, docs/int8.md,
// "Where the AVX2 tier stands"). One 8x8 tile over K, operands in L1, no epilogue:
//   cur: the patched avx2_mmm_i32_8x8 fast loop in intrinsics (|A|, B * sign(A), vpmaddubsw,
//        vpmaddwd by ones; the running minimum of B);
//   i16: both operands widened to i16 at packing time, one vpmaddwd + vpaddd per column and K pair.
// Both are checked against plain C first. Not built by cargo; run it with
//   cc -O2 -mavx2 -DK=256 -o /tmp/i16-loop tools/kith-model/avx2-kernel/i16-loop.c && /tmp/i16-loop
#include <immintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>
#ifndef K
#define K 512
#endif
#define NB (K/4)
static int8_t A8[NB*32] __attribute__((aligned(32)));   // per block: 8 rows x 4 K bytes
static int8_t B8[NB*32] __attribute__((aligned(32)));   // per block: 8 cols x 4 K bytes
static int16_t A16[NB*32] __attribute__((aligned(32))); // per block: 2 x (8 rows x 2 K i16)
static int16_t B16[NB*32] __attribute__((aligned(32))); // per block: 8 cols x 4 K i16
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
__attribute__((noipa)) void cur(int32_t *out){
  __m256i c0=_mm256_setzero_si256(),c1=c0,c2=c0,c3=c0,c4=c0,c5=c0,c6=c0,c7=c0;
  __m256i ones=_mm256_set1_epi16(1), minb=_mm256_setzero_si256();
  for(int b=0;b<NB;b++){
    __m256i a=_mm256_load_si256((void*)(A8+b*32));
    __m256i aa=_mm256_abs_epi8(a);
    __m256i m=_mm256_cmpgt_epi8(_mm256_setzero_si256(),a);
    minb=_mm256_min_epi8(minb,_mm256_load_si256((void*)(B8+b*32)));
#define COL(j,acc) { __m256i bb=_mm256_set1_epi32(*(int32_t*)(B8+b*32+4*j)); \
      __m256i s = (j&1)? _mm256_sub_epi8(_mm256_xor_si256(bb,m),m) : _mm256_sign_epi8(bb,a); \
      acc=_mm256_add_epi32(acc,_mm256_madd_epi16(_mm256_maddubs_epi16(aa,s),ones)); }
    COL(0,c0) COL(1,c1) COL(2,c2) COL(3,c3) COL(4,c4) COL(5,c5) COL(6,c6) COL(7,c7)
  }
  _mm256_storeu_si256((void*)(out),c0); _mm256_storeu_si256((void*)(out+8),c1); _mm256_storeu_si256((void*)(out+16),c2); _mm256_storeu_si256((void*)(out+24),c3);
  _mm256_storeu_si256((void*)(out+32),c4); _mm256_storeu_si256((void*)(out+40),c5); _mm256_storeu_si256((void*)(out+48),c6); _mm256_storeu_si256((void*)(out+56),c7);
  out[64]=_mm256_movemask_epi8(minb);
}
__attribute__((noipa)) void i16(int32_t *out){
  __m256i c0=_mm256_setzero_si256(),c1=c0,c2=c0,c3=c0,c4=c0,c5=c0,c6=c0,c7=c0;
  for(int b=0;b<NB;b++){
    __m256i a0=_mm256_load_si256((void*)(A16+b*32));
    __m256i a1=_mm256_load_si256((void*)(A16+b*32+16));
#define COL16(j,acc) { __m256i b0=_mm256_set1_epi32(*(int32_t*)(B16+b*32+4*j)); \
      __m256i b1=_mm256_set1_epi32(*(int32_t*)(B16+b*32+4*j+2)); \
      acc=_mm256_add_epi32(acc,_mm256_madd_epi16(a0,b0)); acc=_mm256_add_epi32(acc,_mm256_madd_epi16(a1,b1)); }
    COL16(0,c0) COL16(1,c1) COL16(2,c2) COL16(3,c3) COL16(4,c4) COL16(5,c5) COL16(6,c6) COL16(7,c7)
  }
  _mm256_storeu_si256((void*)(out),c0); _mm256_storeu_si256((void*)(out+8),c1); _mm256_storeu_si256((void*)(out+16),c2); _mm256_storeu_si256((void*)(out+24),c3);
  _mm256_storeu_si256((void*)(out+32),c4); _mm256_storeu_si256((void*)(out+40),c5); _mm256_storeu_si256((void*)(out+48),c6); _mm256_storeu_si256((void*)(out+56),c7);
}
int main(){
  unsigned s=1; for(int i=0;i<NB*32;i++){s=s*1103515245+12345; A8[i]=(int8_t)((s>>16)%255-127); s=s*1103515245+12345; B8[i]=(int8_t)((s>>16)%255-127);}
  // i16 layouts: A: block b, half h (k pair), row r: A16[b*32+h*16+r*2+{0,1}] = A8[b*32+r*4+2h+{0,1}]
  for(int b=0;b<NB;b++) for(int h=0;h<2;h++) for(int r=0;r<8;r++) for(int t=0;t<2;t++) A16[b*32+h*16+r*2+t]=A8[b*32+r*4+2*h+t];
  for(int b=0;b<NB;b++) for(int j=0;j<8;j++) for(int k=0;k<4;k++) B16[b*32+4*j+k]=B8[b*32+4*j+k];
  int32_t o1[65],o2[65]; cur(o1); i16(o2);
  // reference
  int ok=1; for(int j=0;j<8;j++) for(int r=0;r<8;r++){int32_t ref=0; for(int b=0;b<NB;b++) for(int k=0;k<4;k++) ref+=A8[b*32+r*4+k]*B8[b*32+j*4+k]; if(ref!=o1[8*j+r]||ref!=o2[8*j+r]) ok=0;}
  printf("correct: %d\n",ok);
  for(int round=0;round<3;round++){
    for(int v=0;v<2;v++){
      double best=1e9; int32_t o[65];
      for(int rep=0;rep<200;rep++){ double t=now(); for(int i=0;i<2000;i++){ if(v) i16(o); else cur(o);} double d=now()-t; if(d<best)best=d; }
      printf("%s K=%d: %.1f GMAC/s\n", v?"i16":"cur", K, 2000.0*64*K/best/1e9);
    }
  }
}
