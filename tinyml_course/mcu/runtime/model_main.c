/*
 * model_main.c - the harness that runs a generated model on the virtual board.
 *
 * model.h (generated) defines MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE and
 * void model_invoke(const int8_t *input, int8_t *output). The host writes an input into
 * tinyml_input (found by its symbol), runs main() and reads tinyml_output.
 */
#include <stdint.h>

#include "model.h"

__attribute__((aligned(4))) int8_t tinyml_input[MODEL_INPUT_SIZE];
__attribute__((aligned(4))) int8_t tinyml_output[MODEL_OUTPUT_SIZE];

int main(void) {
    model_invoke(tinyml_input, tinyml_output);
    return 0;
}
