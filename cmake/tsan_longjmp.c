/*
 * tsan_longjmp.c: linked into the C hosts of a LOOM_TSAN build only.
 * Debian's liblua5.4 is built with _FORTIFY_SOURCE, so its errors and
 * yields leave through __longjmp_chk, which ThreadSanitizer does not
 * intercept: its shadow call stack would then grow on every raise until it
 * overflows. Routing __longjmp_chk through longjmp (intercepted) keeps it
 * in step. The executable's definition interposes on liblua's reference.
 */
#include <setjmp.h>

void __longjmp_chk(jmp_buf env, int val);

void __longjmp_chk(jmp_buf env, int val) { longjmp(env, val); }
