package symbolize

import (
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// maxMangledLen bounds the input given to the demangler; longer names are
// returned as they are. The output is bounded by demangle.MaxLength.
const maxMangledLen = 1 << 14

func looksMangled(name string) bool {
	return strings.HasPrefix(name, "_Z") || strings.HasPrefix(name, "_R") || strings.HasPrefix(name, "__Z")
}

// demangleName demangles C++ (Itanium) and Rust (legacy and v0) names in the
// style of LLVM's demangler, so that names match llvm-symbolizer's. Legacy
// Rust names keep their hash, as llvm-symbolizer prints them. A name that does
// not demangle is returned unchanged.
func demangleName(name string) (out string) {
	if !looksMangled(name) || len(name) > maxMangledLen {
		return name
	}
	defer func() {
		if recover() != nil {
			out = name
		}
	}()
	s, err := demangle.ToString(name, demangle.LLVMStyle, demangle.NoRust, demangle.MaxLength(16))
	if err != nil {
		return name
	}
	return s
}
