// Package unwind turns the call frame information of ELF binaries into
// compact tables that a BPF program walks user stacks with.
//
// Most distribution binaries are built without frame pointers, and even with
// them gcc leaves leaf functions frameless, so a frame-pointer walk (what
// bpf_get_stackid does) drops the caller of every frameless leaf and stops
// inside libraries such as libc. The compiler already records, for every
// instruction, how to find the caller's frame: .eh_frame (and .debug_frame)
// hold DWARF call frame information (DWARF 5 section 6.4). Interpreting that
// bytecode in the kernel at every sample would be too slow and too big for
// the verifier, so this package interprets it once per binary, in user space,
// and keeps only what an unwinder needs: for each range of PCs, how to find
// the canonical frame address (CFA), the return address and the saved frame
// pointer.
//
// # Tables
//
// NewTable (or Open) parses .eh_frame and .debug_frame: CIEs and FDEs, the
// 'z', 'R', 'P', 'L' and 'S' augmentations, every DW_EH_PE pointer encoding
// except indirect ones, and every DW_CFA instruction including
// remember/restore_state and def_cfa_expression. The result is a Table: Rows
// sorted by PC, adjacent rows with the same rules merged, a CFANone row where
// no FDE covers the code. Each Row says
//
//   - CFA: SP+off, FP+off, the x86-64 PLT rule (binutils' lazy PLT CFA
//     expression: SP+off, plus 8 once PC&15 reaches a threshold), or *(FP+off)
//     (gcc's DRAP stack realignment: DW_OP_breg6 off; DW_OP_deref). Any other
//     expression, a CFA based on another register, or a register rule the
//     format cannot hold is marked (CFAExpression, CFAOtherReg, CFABadRule),
//     never guessed: the walker stops there and counts why. An FDE whose
//     instructions cannot be decoded costs its own function (CFAInvalid);
//     its error, with the offset, is kept in Table.Errors.
//   - RA: at CFA+off (always CFA-8 on x86-64; RASwitch where Go switches
//     from the g0 stack back to a goroutine's, and the CFA may be below SP),
//     still in the link register
//     (arm64 leaf code; on x86-64 rdi, where glibc's __vfork keeps it across
//     its system call), or undefined (the outermost frame, e.g. _start).
//   - FP (rbp, x29): unchanged, saved at CFA+off, saved at FP+off (the
//     DRAP frame's DW_CFA_expression rbp: DW_OP_breg6 0), or undefined.
//
// x86-64 is complete. arm64 rows use the same format (SP is x31, FP x29,
// the link register x30); pointer-authenticated return addresses
// (DW_CFA_AARCH64_negate_ra_state) are marked CFABadRule until the walker
// strips PAC bits.
//
// Go binaries (IsGo) are described from their .gopclntab, which survives
// stripping: each function's pcsp table gives the SP delta at every PC, so
// CFA, return address and saved frame pointer are known at every PC, and a
// frameless leaf or an assembly function (memmove, aeshashbody,
// sha256.block) loses no caller, as it does in a frame-pointer walk. The rows
// are ordinary rows of this format (gotable.go); a cgo binary's C code keeps
// its rows from .eh_frame in the same table. Go before 1.20 (ErrOldGo) is
// walked with frame pointers, and the loader counts it.
//
// Tables are built once per build ID and kept in a Cache with a byte budget
// and LRU eviction; GetOrBuild shares one build among concurrent callers and
// Get never blocks, so sampling never waits for a build.
//
// # BPF map layout
//
// All structs are little endian with explicit padding; Go encodes them
// (Table.Encode, TableInfo.MarshalBinary, EncodeProc) and the tests check
// every byte. A table's code is cut into 64 KiB pages from its base (its
// first PC rounded down). Each page has a sorted run of rows: a 16-bit PC
// offset inside the page and a 16-bit index into the table's rules; the
// first row of every page is at offset 0, so a lookup never looks into the
// page before. The rules (CFA, RA and FP recovery) are few per binary, a few
// hundred even in the largest, so each is stored once.
//
//	#define UNWIND_PAGE_SHIFT    16   // PageShift
//	#define UNWIND_SEARCH_STEPS  16   // SearchSteps: at most 1<<16 rows in a page
//	#define UNWIND_MAX_MAPPINGS  256  // MaxMappings
//	#define UNWIND_MAPPING_STEPS 9    // MappingSearchSteps
//	#define UNWIND_MAX_FRAMES    127  // MaxFrames
//
//	enum unwind_cfa { CFA_NONE, CFA_SP, CFA_FP, CFA_PLT, CFA_EXPR, CFA_OTHER_REG, CFA_BAD_RULE, CFA_INVALID,
//	                  CFA_DEREF_FP };
//	enum unwind_fp  { FP_SAME, FP_OFFSET, FP_UNDEFINED, FP_AT_FP };
//	enum unwind_ra  { RA_OFFSET, RA_LINK, RA_UNDEFINED, RA_SWITCH };
//
//	struct unwind_row {      // 4 bytes, RowSize
//		__u16 pc_lo;     // PC offset inside the page
//		__u16 rule;      // index from unwind_table.first_rule
//	};
//
//	struct unwind_rule {     // 8 bytes, RuleSize
//		__s32 cfa_rules; // bits 0-7 rules: 0-3 enum unwind_cfa, 4-5 enum unwind_fp,
//		                 // 6-7 enum unwind_ra; bits 8-31 the signed CFA offset:
//		                 // CFA = SP or FP + (cfa_rules >> 8), an arithmetic shift
//		__s16 fp_off;    // FP_OFFSET: saved FP at CFA + fp_off; FP_AT_FP: at FP + fp_off;
//		                 // CFA_PLT: the threshold
//		__s16 ra_off;    // RA_OFFSET: RA at CFA + ra_off (-8 on x86-64)
//	};
//
//	struct unwind_page {     // 8 bytes, PageSize
//		__u32 first_row; // index from unwind_table.first_row
//		__u32 nrows;     // >= 1
//	};
//
//	struct unwind_table {    // 40 bytes, TableInfoSize
//		__u64 base;                   // ELF virtual address of page 0
//		__u32 first_row, nrows;       // in unwind_rows
//		__u32 first_page, npages;     // in unwind_pages; npages 0: the slot is free
//		__u32 first_rule, nrules;     // in unwind_rules
//		__u32 arch;                   // 1 x86-64, 2 arm64
//		__u32 _pad;
//	};
//
//	struct unwind_mapping {  // 32 bytes, MappingSize
//		__u64 start, end;  // runtime addresses [start, end)
//		__u64 bias;        // runtime address - ELF virtual address
//		__u32 table_id;    // index in unwind_tables
//		__u32 flags;       // 1: MAPPING_FP, walk with frame pointers (no table)
//	};
//
//	struct unwind_proc {     // 8200 bytes, ProcSize
//		__u32 nmappings;   // entries used, sorted by start, not overlapping
//		__u32 _pad;
//		struct unwind_mapping m[UNWIND_MAX_MAPPINGS];
//	};
//
//	unwind_rows    BPF_MAP_TYPE_ARRAY  u32 -> struct unwind_row    (the rows of every table, back to back)
//	unwind_rules   BPF_MAP_TYPE_ARRAY  u32 -> struct unwind_rule
//	unwind_pages   BPF_MAP_TYPE_ARRAY  u32 -> struct unwind_page
//	unwind_tables  BPF_MAP_TYPE_ARRAY  u32 -> struct unwind_table  (table id -> its three ranges)
//	unwind_procs   BPF_MAP_TYPE_HASH   u32 tgid -> struct unwind_proc
//
// Big shared arrays (rather than an array of maps) keep lookups inlined by
// the verifier (array lookups become pointer arithmetic) and let user space
// place a table anywhere with one batch update per array. The measured sizes
// (BenchmarkBuildTable): libc.so.6 gives 28296 rows, 302 rules and 22 pages,
// 116 KB, 0.76 times its .eh_frame; the biggest library on the development
// machine (libclang-cpp, 6.7 MB of .eh_frame) gives 1.35 million rows, 761
// rules and 680 pages, 5.4 MB, 0.81 times. Its fullest page has 4681 rows:
// 13 search steps. (A first layout with a 12-byte row holding its rules and
// a 32-bit PC was 2.2 to 2.4 times .eh_frame and needed up to 21 steps.)
//
// Loading a process (user space, when the tracer reports a new pid): read
// /proc/PID/maps; for each executable file mapping compute its Bias, look its
// build ID up in the Cache (Cache.Prefetch builds in the background on a
// miss), take free ranges of the three arrays from one Space each and copy
// the table's Encoded arrays there; only then write unwind_tables[id]
// (TableInfo), and last unwind_procs[pid] (EncodeProc). Mappings whose table
// is not loaded yet (or Go binaries before Go 1.20, or binaries without frame information)
// go in with MAPPING_FP and are rewritten when their table arrives. To evict
// a table, first rewrite the procs that use it, then zero its unwind_tables
// entry, then reuse its ranges.
//
// # The walk
//
// Unwind is the reference walker: it reads only those encoded bytes, in the
// order the BPF program (unwind_step in bpf/unwind.bpf.h, one frame per
// bpf_loop callback) does, and each of its steps is the BPF step's: find
// the mapping of PC (PC-1 for a return address) by binary search; in a
// MAPPING_FP mapping (JIT code, Go before 1.20, a table not loaded yet), or
// at code its table has no row for (no FDE: V8's builtins embedded in node,
// hand-written trampolines), take a frame-pointer step ([fp] is the caller's
// fp, [fp+8] its return address) and go on with tables in the caller's
// mapping; otherwise find the page, binary search its rows, and apply the
// row's CFA, return-address and frame-pointer rules. The stack must move up
// (but for a leaf whose return address is still in LR, and a switch of
// stacks). Its Reason values are the indexes of the BPF program's
// truncation counters; a stack that is not ReasonComplete is marked
// truncated with that reason, never silently cut.
//
// After UNWIND_MAX_FRAMES steps without stopping the reason is
// REASON_MAX_FRAMES. The registers come from the perf event's pt_regs (for
// off-CPU stacks taken at tp_btf/sys_exit, bpf_task_pt_regs of the task):
// ip, sp, bp on x86-64; pc, sp, regs[29], regs[30] on arm64.
//
// Not handled, and counted rather than guessed: signal frames (the 'S'
// augmentation; the walk stops at the trampoline's expression rows), code
// outside every known mapping (ReasonNoMapping), and frame-pointer steps
// through code that keeps no frame pointer (x86-64's CPython -X perf
// trampoline in an interpreter built without them: ReasonBadFrame).
//
// Not used: the unwinding information of JIT code in a jitdump file
// (CPython's -X perf_jit writes an FDE per trampoline). x86-64's CPython
// trampoline keeps no frame pointer, so the frame-pointer step through it
// reads the frame of its caller, py_trampoline_evaluator, and that one C
// frame is missing beneath each Python frame; the Python frames and the
// rest of the interpreter's are all there (TestPythonPerfJitChains: the
// whole chain in 100% of samples over 8 runs). The FDEs would be of little
// use while the interpreter runs anyway: CPython writes the file through
// stdio, and those of a script's own functions reached it only at exit.
package unwind
