// Package debuginfod fetches debug files by build ID from debuginfod servers
// (elfutils' protocol: GET /buildid/ID/debuginfo and /buildid/ID/executable)
// into the standard client's cache, so that stripped distribution binaries
// get names and lines, and so that gdb and perf find the same files later.
//
// The servers come from DEBUGINFOD_URLS (space-separated), as for every other
// client, or from a flag; with neither, nothing is fetched. The cache is
// $DEBUGINFOD_CACHE_PATH, else $XDG_CACHE_HOME/debuginfod_client, else
// ~/.cache/debuginfod_client, laid out as elfutils lays it out:
// ID/debuginfo and ID/executable, and an empty file of mode 000 in their
// place for a build ID no server has (a negative entry, trusted for
// cache_miss_s seconds, 600 by default, as elfutils does).
//
// Fetching never happens on the caller's path: Cached answers from memory
// and the file system, Request queues the build ID for a background worker
// and returns at once, and the profile symbolized meanwhile keeps what it has;
// a later profile gets the names. Wait lets a one-shot `record` give the
// fetches a bounded time before it writes its profile.
//
// Answers are hostile until checked: each file is written under a temporary
// name, capped in size while it is read, and kept only if it is an ELF file
// whose build ID is the one asked for. A server that hangs meets a timeout,
// one that answers garbage gets a negative entry for that build ID; either
// costs that binary's names and nothing else. The cache has a byte budget:
// after a fetch, the least recently used files are removed to stay within it.
package debuginfod
