package bpf

// The errno values the programs store, negated, in a SampleKey's stack fields
// (enum errno in ember.h, declared once for C and Go).
const (
	ErrnoNoEnt   = int64(emberErrnoENOENT)  // no stack to take: not a loss
	ErrnoNoMem   = int64(emberErrnoENOMEM)  // the stack's map was full
	ErrnoFault   = int64(emberErrnoEFAULT)  // the stack was unreadable
	ErrnoExist   = int64(emberErrnoEEXIST)  // another stack has its bucket or hash
	ErrnoStale   = int64(emberErrnoESTALE)  // stored before a drain flipped the sets
	ErrnoNoData  = int64(emberErrnoENODATA) // the block's end was not reported: no stacks
	ErrnoNotSupp = int64(emberErrnoEOPNOTSUPP)
)
