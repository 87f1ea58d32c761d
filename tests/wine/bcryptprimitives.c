/* A stand-in bcryptprimitives.dll for Wine < 9 (Debian 12 ships 8.0).
 *
 * Rust's std (1.78+) seeds its hash maps with ProcessPrng from
 * bcryptprimitives.dll, which Wine 8 lacks, so every Rust Windows binary
 * fails to load there (status c0000135). This DLL provides ProcessPrng on top
 * of RtlGenRandom. Only the wine test uses it; real Windows has the DLL. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return RtlGenRandom(data, (ULONG)len); }
