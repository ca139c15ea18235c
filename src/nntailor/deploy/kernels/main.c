/* Host harness: reads NNT_INPUT_BYTES raw int8 bytes from stdin (the quantized input of the .tflite,
 * NHWC), runs nnt_invoke, writes NNT_OUTPUT_BYTES raw int8 bytes to stdout. ``--repeat M`` does that M times in one
 * process (M inputs in, M outputs out), which times the kernels without the process start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int8_t input[NNT_INPUT_BYTES];
static int8_t output[NNT_OUTPUT_BYTES];

int main(int argc, char **argv) {
    long repeat = 1, r;
    if (argc == 3 && strcmp(argv[1], "--repeat") == 0) {
        repeat = strtol(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--repeat M] < input.bin > output.bin\n", argv[0]);
        return 2;
    }
    for (r = 0; r < repeat; ++r) {
        if (fread(input, 1, sizeof input, stdin) != sizeof input) {
            fprintf(stderr, "error: input %ld: expected %d int8 bytes on stdin\n", r, NNT_INPUT_BYTES);
            return 1;
        }
        nnt_invoke(input, output);
        if (fwrite(output, 1, sizeof output, stdout) != sizeof output) return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
