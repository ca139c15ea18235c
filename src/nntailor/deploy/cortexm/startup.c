/*
 * Minimal Cortex-M startup for programs run under qemu-system-arm with semihosting.
 *
 * The vector table holds the initial stack pointer (top of the stack the linker script reserves)
 * and the reset handler. The reset handler enables the FPU where the core has one (CPACR, ARMv7-M
 * ARM B3.2.20: CP10 and CP11 full access, then DSB/ISB before the first FP instruction), copies
 * .data from its load address in flash, zeroes .bss, opens the semihosting handles of newlib's
 * librdimon and calls exit(main()); exit() reaches SYS_EXIT_EXTENDED, so main's return value
 * becomes QEMU's exit code. newlib's crt0 `_start` is not used: it asks the debugger (SYS_HEAPINFO)
 * where the stack is, which would move the stack away from the reservation the linker script sets
 * and that nntailor reports as static RAM.
 *
 * I/O: librdimon opens ":tt" for stdin and stdout; QEMU's semihosting (target native) maps those to
 * its own file descriptors 0 and 1, so SYS_READ/SYS_WRITE move raw bytes synchronously. QEMU must
 * then run without a stdio chardev (no -nographic, whose multiplexer also reads fd 0, races the
 * guest for input and treats Ctrl-A x in the data as "quit").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern int main(void);
extern void initialise_monitor_handles(void);

/* Symbols from the linker script (cortexm.ld.in). */
extern uint32_t __stack_top;
extern uint8_t __data_load, __data_start, __data_end, __bss_start__, __bss_end__;

void Reset_Handler(void);
void _init(void);
void _fini(void);

/* newlib's __libc_init_array/__libc_fini_array call these; crti.o, which defines them, is not linked. */
void _init(void) {}
void _fini(void) {}

void Default_Handler(void);

void Default_Handler(void) {
    /* A fault under emulation: stop with a distinctive exit code instead of spinning forever. */
    exit(134);
}

void Reset_Handler(void) {
#if defined(__ARM_FP)
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= (0xFu << 20);
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
    memcpy(&__data_start, &__data_load, (size_t)(&__data_end - &__data_start));
    memset(&__bss_start__, 0, (size_t)(&__bss_end__ - &__bss_start__));
    initialise_monitor_handles();
    exit(main());
}

/* Reset plus the ARMv6-M/ARMv7-M system exceptions (NMI .. SysTick); no device interrupts are used. */
__attribute__((section(".vectors"), used)) static void (*const vector_table[16])(void) = {
    (void (*)(void))(&__stack_top),
    Reset_Handler,
    Default_Handler, /* NMI */
    Default_Handler, /* HardFault */
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    Default_Handler, /* SysTick */
};
