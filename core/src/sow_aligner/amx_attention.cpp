// Attention in bfloat16 on a CPU with AMX (amx_attention.py builds and calls it): the text decoder's causal
// attention over one prompt, and the audio encoder's attention within its windows.
//
// out[t, h] = sum over s of softmax_s(scale * q[h, t] . k[h / group, s]) * v[h / group, s], for every head h of H
// and token t, group = H / KVH (grouped-query attention). The tokens form `windows` consecutive windows of L
// tokens each, and a token attends to the keys of its own window only: all of them (causal = 0), or those up to
// its own position (causal = 1). The two products run on AMX tiles (bfloat16 in, float32 sums); the softmax runs
// in float32 with AVX-512, online over blocks of keys as in flash attention:
//
// * Each task is one window, one head and BQ = 64 query rows; it visits the keys BK = 256 at a time, up to its
//   last row only where causal (the masked half is never computed), and zeroes the weights past each row's last
//   key: its own position where causal, else the window's end.
// * The weights are 2^(score * scale * log2(e) - reference): reference is the row's largest exponent in its first
//   block; a later block whose exponents exceed it by more than LAZY (8) moves it up and is done again, with the
//   sum and the weighted values so far scaled down. So weights stay within 2^8 and a row is rescaled only when its
//   scores rise that far, where flash attention rescales at every block whose maximum rises.
// * 2^x is a degree-5 polynomial within 2.3e-7 (relative) of the exact value: float32's own precision, a few units
//   in the last place. The weights enter the second product rounded to bfloat16 (nearest even), as in PyTorch's
//   flash kernel; their sum stays float32. The output is rounded to bfloat16 (nearest even) once, at the end.
//
// Layouts (strides in elements; the last dimension contiguous): window w's q[h * qsh + t * qst + d] starts at
// q + w * qwin, its k[h * ksh + t * kst + d] at k + w * kwin, v likewise; out[((w * L + t) * H + h) * D + d]. D is a
// multiple of 16, at most 128 (padded to dp, a multiple of 32, with zeros); a window's keys are padded to lp, a
// multiple of 64. kt and vp are scratch the caller allocates: windows * KVH * lp * dp / 2 32-bit words and
// windows * KVH * lp * dp bfloat16. Threads: an OpenMP team of `threads` (the process's libgomp, which is torch's),
// each configuring its own tiles and releasing them when done.
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

enum { BQ = 64, BK = 256, MAX_DP = 128 };
static const float LOG2E = 1.44269504088896341f;
static const float LAZY = 8.0f;

struct TileConfig {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// Tiles 0-3 hold float32 sums (16 x 16), 4-5 the left operand (16 rows x 32 bfloat16), 6-7 the right one (16 pairs
// of rows x 16 columns): each product takes 32 x 32 outputs at a time.
static void configure_tiles(void) {
    TileConfig config;
    memset(&config, 0, sizeof config);
    config.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.colsb[t] = 64;
    }
    _tile_loadconfig(&config);
}

// 2^t for t <= 127: 2^n * p(f), n = round(t) to nearest even, f = t - n in [-0.5, 0.5], the product by 2^n
// exact (scalef). t below -127 counts as -127: a weight of at most 2^-127 beside a row's largest, 1, adds nothing
// a float32 sum or a bfloat16 weight can hold.
static inline __m512 exp2_bounded(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-127.0f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.3266970636323094e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.675459936261177e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550742521882057e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022121727466583e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931469440460205e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_scalef_ps(p, n);
}

// Sums in tiles 0-3 += a x b: rows 0-15 of a in tile 4, 16-31 in tile 5 (`a_stride` bytes between rows), the
// right operand's columns 0-15 in tile 6 from b0, 16-31 in tile 7 from b1 (1 KB contiguous each).
static inline void multiply(const void *a, long a_stride, const void *b0, const void *b1) {
    _tile_loadd(4, a, a_stride);
    _tile_loadd(5, (const char *)a + 16 * a_stride, a_stride);
    _tile_loadd(6, b0, 64);
    _tile_loadd(7, b1, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

// Tiles 0-3 to 32 x 32 float32 sums at c (`stride` floats between rows) and back.
static inline void store_sums(float *c, long stride) {
    _tile_stored(0, c, stride * 4);
    _tile_stored(1, c + 16, stride * 4);
    _tile_stored(2, c + 16 * stride, stride * 4);
    _tile_stored(3, c + 16 * stride + 16, stride * 4);
}

static inline void load_sums(const float *c, long stride) {
    _tile_loadd(0, c, stride * 4);
    _tile_loadd(1, c + 16, stride * 4);
    _tile_loadd(2, c + 16 * stride, stride * 4);
    _tile_loadd(3, c + 16 * stride + 16, stride * 4);
}

// The first `count` lanes: all when count >= 16, none when count <= 0.
static inline __mmask16 lanes(int count) {
    return count >= 16 ? (__mmask16)0xffff : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

static inline __m512i as_bf16(__m512 high, __m512 low) {
    return (__m512i)_mm512_cvtne2ps_pbh(high, low);
}

// The keys and values as the products' right operands, each 16 x 64-byte tile 1 KB contiguous, zeros past L and D;
// h below counts window w's key head j as w * KVH + j:
// kt: ((h * lp/16 + s/16) * dp/2 + pair) * 16 + s%16 holds key s's dimensions (2 pair, 2 pair + 1);
// vp: ((h * dp/16 + d/16) * lp/32 + s/32) * 512 + ((s%32)/2 * 16 + d%16) * 2 + s%2 holds value s's dimension d.
static void pack(const bf16 *k, long ksh, long kst, long kwin, const bf16 *v, long vsh, long vst, long vwin,
                 uint32_t *kt, bf16 *vp, int kvh, int windows, int L, int lp, int D, int dp) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32((int)(kst / 2)));
#pragma omp for collapse(2) schedule(static)
    for (int h = 0; h < windows * kvh; h++) {
        for (int block = 0; block < lp / 32; block++) {
            const bf16 *kh = k + (long)(h / kvh) * kwin + (long)(h % kvh) * ksh;
            const bf16 *vh = v + (long)(h / kvh) * vwin + (long)(h % kvh) * vsh;
            for (int half = 0; half < 2; half++) {
                const int s0 = block * 32 + half * 16;
                const __mmask16 live = lanes(L - s0);
                const int *words = (const int *)(kh + (long)s0 * kst);
                uint32_t *tile = kt + ((size_t)h * (lp / 16) + s0 / 16) * (dp / 2) * 16;
                for (int pair = 0; pair < dp / 2; pair++) {
                    __m512i column = _mm512_setzero_si512();
                    if (2 * pair < D && live) column = _mm512_mask_i32gather_epi32(column, live, rows, words + pair, 4);
                    _mm512_store_si512((void *)(tile + pair * 16), column);
                }
            }
            for (int pair = 0; pair < 16; pair++) {
                const int s = block * 32 + 2 * pair;
                for (int dc = 0; dc < dp; dc += 16) {
                    __m512i both = _mm512_setzero_si512();
                    if (dc < D && s < L) {
                        const bf16 *even = vh + (long)s * vst + dc;
                        both = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)even));
                        if (s + 1 < L)
                            both = _mm512_or_si512(both, _mm512_slli_epi32(
                                _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(even + vst))), 16));
                    }
                    bf16 *tile = vp + (((size_t)h * (dp / 16) + dc / 16) * (lp / 32) + block) * 512 + pair * 32;
                    _mm512_store_si512((void *)tile, both);
                }
            }
        }
    }
}

// weights[c] = bfloat16(2^(row[c] * scale - reference)) for c < valid, 0 for valid <= c < nk (nk a multiple of
// 32); adds their float32 sum to *sum unless an exponent exceeds LAZY. Returns the largest exponent (-inf when
// valid <= 0).
static inline float exponentials(const float *row, bf16 *weights, int valid, int nk, __m512 scale, float reference,
                                 float *sum) {
    const __m512 shift = _mm512_set1_ps(reference);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, x0 = _mm512_set1_ps(-INFINITY), x1 = x0;
    int c = 0;
    for (; c + 32 <= valid; c += 32) {
        const __m512 ta = _mm512_fmsub_ps(_mm512_load_ps(row + c), scale, shift);
        const __m512 tb = _mm512_fmsub_ps(_mm512_load_ps(row + c + 16), scale, shift);
        x0 = _mm512_max_ps(x0, ta);
        x1 = _mm512_max_ps(x1, tb);
        const __m512 a = exp2_bounded(ta), b = exp2_bounded(tb);
        s0 = _mm512_add_ps(s0, a);
        s1 = _mm512_add_ps(s1, b);
        _mm512_store_si512((void *)(weights + c), as_bf16(b, a));
    }
    for (; c < nk; c += 32) {  // the last key: nothing past it
        const __mmask16 la = lanes(valid - c), lb = lanes(valid - c - 16);
        const __m512 ta = _mm512_fmsub_ps(_mm512_load_ps(row + c), scale, shift);
        const __m512 tb = _mm512_fmsub_ps(_mm512_load_ps(row + c + 16), scale, shift);
        x0 = _mm512_mask_max_ps(x0, la, x0, ta);
        x1 = _mm512_mask_max_ps(x1, lb, x1, tb);
        const __m512 a = _mm512_maskz_mov_ps(la, exp2_bounded(ta)), b = _mm512_maskz_mov_ps(lb, exp2_bounded(tb));
        s0 = _mm512_add_ps(s0, a);
        s1 = _mm512_add_ps(s1, b);
        _mm512_store_si512((void *)(weights + c), as_bf16(b, a));
    }
    const float over = _mm512_reduce_max_ps(_mm512_max_ps(x0, x1));
    if (over <= LAZY) *sum += _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    return over;
}

// The largest of row[0, valid), valid >= 1.
static inline float row_maximum(const float *row, int valid) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int c = 0;
    for (; c + 64 <= valid; c += 64) {
        m0 = _mm512_max_ps(m0, _mm512_load_ps(row + c));
        m1 = _mm512_max_ps(m1, _mm512_load_ps(row + c + 16));
        m2 = _mm512_max_ps(m2, _mm512_load_ps(row + c + 32));
        m3 = _mm512_max_ps(m3, _mm512_load_ps(row + c + 48));
    }
    for (; c < valid; c += 16) m0 = _mm512_mask_max_ps(m0, lanes(valid - c), m0, _mm512_load_ps(row + c));
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

struct Problem {
    const bf16 *q;
    long qsh, qst, qwin;
    const uint32_t *kt;
    const bf16 *vp;
    bf16 *out;
    int H, KVH, group, L, lp, D, dp, causal;
    float scale;
};

// One thread's working memory (144 KB: on the heap, whatever the calling thread's stack).
struct Scratch {
    alignas(64) float scores[BQ * BK];
    alignas(64) bf16 weights[BQ * BK];
    alignas(64) float acc[BQ * MAX_DP];
    alignas(64) bf16 padded[BQ * MAX_DP];
    float reference[BQ], sum[BQ];
};

// Rows [q0, q0 + BQ) of one window's head attend the window's keys: [0, q0 + BQ) where causal, else all of them.
static void attend(const Problem &p, Scratch &scratch, int window, int head, int q0) {
    float *scores = scratch.scores, *acc = scratch.acc, *reference = scratch.reference, *sum = scratch.sum;
    bf16 *weights = scratch.weights, *padded = scratch.padded;
    const int dp = p.dp;
    const size_t key_head = (size_t)window * p.KVH + head / p.group;
    const uint32_t *kh = p.kt + key_head * (p.dp / 2) * p.lp;
    const bf16 *vh = p.vp + key_head * p.lp * p.dp;
    const bf16 *qw = p.q + window * p.qwin + head * p.qsh;
    const bf16 *qa = qw + (long)q0 * p.qst;
    long qstride = p.qst;
    if (p.D != dp || q0 + BQ > p.L) {  // a copy padded with zeros
        for (int i = 0; i < BQ; i++)
            for (int d = 0; d < dp; d++)
                padded[i * dp + d] = (q0 + i < p.L && d < p.D) ? qw[(long)(q0 + i) * p.qst + d] : 0;
        qa = padded;
        qstride = dp;
    }
    memset(acc, 0, sizeof(float) * BQ * dp);
    memset(sum, 0, sizeof scratch.sum);
    const __m512 scale = _mm512_set1_ps(p.scale * LOG2E);
    const int end = p.causal ? q0 + BQ : p.lp;
    for (int kv0 = 0; kv0 < end; kv0 += BK) {
        const int nk = end - kv0 < BK ? end - kv0 : BK;
        for (int j = 0; j < nk; j += 32) {  // scores = q k^T
            for (int half = 0; half < BQ; half += 32) {
                const bf16 *qh = qa + half * qstride;
                float *sh = scores + half * BK;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int s = 0; s < dp / 32; s++)
                    multiply(qh + s * 32, qstride * 2, kh + ((size_t)(kv0 + j) / 16 * (dp / 2) + s * 16) * 16,
                             kh + ((size_t)(kv0 + j + 16) / 16 * (dp / 2) + s * 16) * 16);
                store_sums(sh + j, BK);
            }
        }
        for (int i = 0; i < BQ; i++) {  // weights, in float32 then bfloat16
            const int last = p.causal ? q0 + i + 1 : p.L;  // one past the row's last key
            const int valid = last - kv0 < nk ? last - kv0 : nk;  // >= 1: kv0 <= q0 where causal, kv0 < L if not
            const float *row = scores + i * BK;
            if (kv0 == 0) reference[i] = row_maximum(row, valid) * p.scale * LOG2E;
            const float over = exponentials(row, weights + i * BK, valid, nk, scale, reference[i], &sum[i]);
            if (over > LAZY) {
                const __m512 alpha = _mm512_set1_ps(exp2f(-over));
                reference[i] += over;
                sum[i] *= exp2f(-over);
                for (int d = 0; d < dp; d += 16)
                    _mm512_store_ps(acc + i * dp + d, _mm512_mul_ps(alpha, _mm512_load_ps(acc + i * dp + d)));
                exponentials(row, weights + i * BK, valid, nk, scale, reference[i], &sum[i]);
            }
        }
        for (int half = 0; half < BQ; half += 32) {  // acc += weights v
            float *ah = acc + half * dp;
            const bf16 *wh = weights + half * BK;
            for (int dc = 0; dc < dp; dc += 32) {
                load_sums(ah + dc, dp);
                for (int j = 0; j < nk; j += 32) {
                    const bf16 *vb = vh + ((size_t)(dc / 16) * (p.lp / 32) + (kv0 + j) / 32) * 512;
                    multiply(wh + j, BK * 2, vb, vb + (size_t)(p.lp / 32) * 512);
                }
                store_sums(ah + dc, dp);
            }
        }
    }
    for (int i = 0; i < BQ && q0 + i < p.L; i++) {
        const __m512 inverse = _mm512_set1_ps(1.0f / sum[i]);
        bf16 *row = p.out + (((size_t)window * p.L + q0 + i) * p.H + head) * p.D;
        for (int d = 0; d < p.D; d += 16)
            _mm256_storeu_si256((__m256i *)(row + d),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_load_ps(acc + i * dp + d), inverse)));
    }
}

// 0 when done; 1 when the shapes are outside what the kernel takes, 2 when memory ran out (nothing written).
extern "C" int sow_attention(const bf16 *q, long qsh, long qst, long qwin, const bf16 *k, long ksh, long kst,
                             long kwin, const bf16 *v, long vsh, long vst, long vwin, bf16 *out, uint32_t *kt,
                             bf16 *vp, int H, int KVH, int windows, int L, int D, float scale, int causal,
                             int threads) {
    const int lp = (L + 63) / 64 * 64, dp = (D + 31) / 32 * 32;
    if (L < 1 || windows < 1 || D < 16 || D % 16 || dp > MAX_DP || KVH < 1 || H % KVH || kst % 2 || threads < 1)
        return 1;
    const Problem problem = {q, qsh, qst, qwin, kt, vp, out, H, KVH, H / KVH, L, lp, D, dp, causal != 0, scale};
    const int blocks = lp / BQ, group = H / KVH;
    Scratch *scratch = (Scratch *)aligned_alloc(64, sizeof(Scratch) * threads);
    if (!scratch) return 2;
#pragma omp parallel num_threads(threads)
    {
        Scratch &mine = scratch[omp_get_thread_num()];
        pack(k, ksh, kst, kwin, v, vsh, vst, vwin, kt, vp, KVH, windows, L, lp, D, dp);  // ends with a barrier
        configure_tiles();
        // Window by window, a key head's query heads together, longest rows first: the team shares the keys and
        // values of one key head in cache.
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < windows * H * blocks; task++) {
            const int window = task / (H * blocks), in_window = task % (H * blocks);
            const int kv = in_window / (blocks * group), rest = in_window % (blocks * group);
            attend(problem, mine, window, kv * group + rest % group, (blocks - 1 - rest / group) * BQ);
        }
        _tile_release();
    }
    free(scratch);
    return 0;
}
