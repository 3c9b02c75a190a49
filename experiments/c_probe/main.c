// Stand-alone driver for the probes (inputs dumped by experiments/c_decode_probe.py --dump DIR):
// best-of-N wall time and an exactness check, and a target for valgrind --tool=cachegrind.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "pm_decode.h"
static void *rd(const char *d, const char *n) {
    char p[512]; snprintf(p, sizeof p, "%s/%s.bin", d, n);
    FILE *f = fopen(p, "rb"); fseek(f, 0, SEEK_END); long s = ftell(f); fseek(f, 0, SEEK_SET);
    void *b = malloc(s + 16); fread(b, 1, s, f); fclose(f); return b;
}
int main(int argc, char **argv) {
    const char *d = argv[1]; int reps = atoi(argv[2]);
    char p[512]; snprintf(p, sizeof p, "%s/meta.txt", d);
    FILE *f = fopen(p, "r"); long nt, c, h, w, nbb; fscanf(f, "%ld %ld %ld %ld %ld", &nt, &c, &h, &w, &nbb); fclose(f);
    uint8_t *out = malloc(c * h * w); int64_t err[4096]; uint8_t vq[1] = {0};
    uint8_t *ref = rd(d, "ref");
    void *D=rd(d,"data"),*BB=rd(d,"bb"),*BX=rd(d,"boxes"),*CF=rd(d,"coefs"),*PR=rd(d,"prior"),*BK=rd(d,"bk"),*FC=rd(d,"fc"),*EB=rd(d,"eb"),*LM=rd(d,"lom"),*CR=rd(d,"crc"),*RC=rd(d,"recip"),*GC=rd(d,"gc");
    struct timespec a, b; double best = 1e9;
    for (int r = 0; r < reps; r++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        pm_decode(D, BB, BX, nt, vq, 0, CF, PR, out, c, h, w, err, BK, FC, EB, LM, CR, RC, GC);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double t = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
        if (t < best) best = t;
    }
    printf("%s: %s, %.1f ns/sample\n", d, memcmp(out, ref, c * h * w) ? "MISMATCH" : "exact", best / (c * h * w));
    return 0;
}
