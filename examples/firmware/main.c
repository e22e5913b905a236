/* Firmware side: the arena is sized by the header tflite-reorder generated for this model. */
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

_Static_assert(MODEL_OPT_ARENA_SIZE % 16 == 0, "TFLM wants a 16-byte multiple");
_Static_assert(MODEL_OPT_ARENA_SIZE >= MODEL_OPT_ARENA_HEAD + MODEL_OPT_ARENA_TAIL,
               "arena must hold the planned head and the persistent tail");

/* 16-byte aligned, as MicroArenaBufferAlignment() requires. */
static uint8_t tensor_arena[MODEL_OPT_ARENA_SIZE] __attribute__((aligned(16)));

/* With TFLM this would be:
 *   tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, sizeof tensor_arena);
 */
uint8_t *firmware_arena(size_t *size) {
  *size = sizeof tensor_arena;
  return tensor_arena;
}
