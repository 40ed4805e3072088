# Loops built twice: for SSE2, which every x86-64 CPU has, and for AVX2
# (4 float64 lanes instead of 2), the build chosen per call by the CPU the
# code runs on; a wheel cannot assume -march. The AVX2 build enables no FMA,
# so the compiler cannot fuse a * b + c: both builds give the same bits.
# FASTBP_NO_AVX2=1 (read when the extension loads) keeps the SSE2 build
# everywhere.
cdef extern from *:
    """
    #include <stdlib.h>
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #define FASTBP_AVX2_VOID __attribute__((target("avx2"))) void
    #define FASTBP_RULE_VOID __attribute__((always_inline)) void
    static int fastbp_avx2_state = 0;
    /* Chosen once, as the extension loads: never lazily from inside the
       threads of a parallel region. */
    __attribute__((constructor)) static void fastbp_choose_avx2(void) {
        const char* off = getenv("FASTBP_NO_AVX2");
        __builtin_cpu_init();
        fastbp_avx2_state = __builtin_cpu_supports("avx2")
            && !(off != NULL && off[0] != 0 && off[0] != '0');
    }
    static int fastbp_use_avx2(void) { return fastbp_avx2_state; }
    #else
    #define FASTBP_AVX2_VOID void
    #define FASTBP_RULE_VOID void
    static int fastbp_use_avx2(void) { return 0; }
    #endif
    """
    # The return types of a loop's body (always inlined, so that each
    # wrapper compiles it for its own instruction set) and of its AVX2
    # wrapper.
    ctypedef void rule_void "FASTBP_RULE_VOID"
    ctypedef void avx2_void "FASTBP_AVX2_VOID"
    bint use_avx2 "fastbp_use_avx2"() noexcept nogil
