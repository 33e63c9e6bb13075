/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it: Rust's std (1.78 and later) imports
 * ProcessPrng from it to seed HashMap and fill random buffers, so every Rust program for
 * x86_64-pc-windows-gnu fails to start under Wine 8.0 (c0000135) without this.
 *
 * On Windows ProcessPrng always returns TRUE; here it forwards to BCryptGenRandom with the
 * system-preferred RNG, which Wine 8.0 implements, and says FALSE only if that fails. Built and installed into the test
 * prefix by `cargo xtask setup`; nothing outside the Wine prefix uses it.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
