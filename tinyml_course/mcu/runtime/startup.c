/*
 * startup.c - what runs before main() on a Cortex-M4, in C.
 *
 * After reset the core reads two words from the start of flash: the initial stack pointer
 * and the address of Reset_Handler (the vector table, Armv7-M Architecture Reference Manual,
 * B1.5.3). Reset_Handler copies the initial values of .data from flash to RAM, zeroes .bss,
 * calls main() and stops at a breakpoint. The symbols __data_start__ ... __stack_top__ come
 * from the linker script (link.ld).
 */
#include <stdint.h>

#include "tinyml_board.h"

extern uint32_t __data_start__, __data_end__, __data_load__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __stack_top__;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void tinyml_exit(void);

/* The value main() returned (the emulator reads r0 instead; kept for a debugger). */
volatile int32_t tinyml_exit_code;
/* Phase markers: tinyml_mark() writes here; the emulator's counting run watches the address. */
volatile int32_t tinyml_marker;

/* The 16 system exceptions of the Armv7-M vector table; no device interrupts are enabled. */
__attribute__((section(".isr_vector"), used))
void (*const tinyml_vectors[16])(void) = {
    (void (*)(void))(&__stack_top__), /* 0: initial stack pointer */
    Reset_Handler,                    /* 1: reset */
    Default_Handler,                  /* 2: NMI */
    Default_Handler,                  /* 3: HardFault */
    Default_Handler,                  /* 4: MemManage */
    Default_Handler,                  /* 5: BusFault */
    Default_Handler,                  /* 6: UsageFault */
    0, 0, 0, 0,                       /* 7-10: reserved */
    Default_Handler,                  /* 11: SVCall */
    Default_Handler,                  /* 12: DebugMonitor */
    0,                                /* 13: reserved */
    Default_Handler,                  /* 14: PendSV */
    Default_Handler,                  /* 15: SysTick */
};

void Reset_Handler(void) {
    uint32_t *src = &__data_load__;
    uint32_t *dst = &__data_start__;
    while (dst < &__data_end__) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__;) {
        *dst++ = 0;
    }
    tinyml_exit_code = main();
    tinyml_exit();
}

/* main() returned: stop here (the emulator ends the run when the core reaches this address). */
__attribute__((naked, noreturn)) void tinyml_exit(void) {
    __asm__ volatile("bkpt #0\n\tb .");
}

/* Any fault or unexpected exception: stop (the emulator reports which one, and where). */
__attribute__((naked, noreturn)) void Default_Handler(void) {
    __asm__ volatile("bkpt #0xfe\n\tb .");
}

__attribute__((noinline)) void tinyml_mark(int32_t id) {
    tinyml_marker = id;
}
