/* Host harness: reads raw int8 inputs of NNT_INPUT_BYTES each from stdin (the quantized input of the .tflite,
 * NHWC) until end of file, runs nnt_invoke on each and writes its NNT_OUTPUT_BYTES raw int8 bytes to stdout. One
 * input is one inference; M inputs in one launch time the kernels without the process start. No command line:
 * under semihosting some boards hand the program arguments that are not valid pointers. */
#include <stdio.h>

#include "model.h"

static int8_t input[NNT_INPUT_BYTES];
static int8_t output[NNT_OUTPUT_BYTES];

int main(void) {
    long count = 0;
    for (;;) {
        const size_t got = fread(input, 1, sizeof input, stdin);
        if (got == 0 && count > 0) break;
        if (got != sizeof input) {
            fprintf(stderr, "error: input %ld: expected %d int8 bytes on stdin, got %lu\n", count, NNT_INPUT_BYTES,
                    (unsigned long)got);
            return 1;
        }
        nnt_invoke(input, output);
        if (fwrite(output, 1, sizeof output, stdout) != sizeof output) return 1;
        ++count;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
