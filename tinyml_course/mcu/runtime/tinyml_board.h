/*
 * tinyml_board.h - included first in every file the course compiles for the virtual board
 * (the build passes `-include tinyml_board.h`).
 *
 * tinyml_mark(id) records a phase marker: the emulator's counting run splits the instruction
 * count at every call (see tinyml_course.mcu.emulator). A generated model calls
 * TINYML_LAYER_DONE(i) after each layer; here that macro becomes tinyml_mark(i).
 * On a real chip a marker is one store to a RAM variable (about 5 instructions per call).
 */
#ifndef TINYML_BOARD_H
#define TINYML_BOARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Write `id` to the marker variable `tinyml_marker` (the emulator watches that address). */
void tinyml_mark(int32_t id);

#ifndef TINYML_LAYER_DONE
#define TINYML_LAYER_DONE(i) tinyml_mark((int32_t)(i))
#endif

#ifdef __cplusplus
}
#endif

#endif /* TINYML_BOARD_H */
