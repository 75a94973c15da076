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

// demangleName demangles C++ (Itanium) names in the style of LLVM's
// demangler, as llvm-symbolizer and perf print them, and Rust names (legacy
// and v0) as rustfilt does, which is how Rust users read them: no legacy
// hash (::h0123...), no crate disambiguators, and an LLVM ThinLTO suffix
// (.llvm.NNN) dropped. A name that does not demangle is returned unchanged.
func demangleName(name string) (out string) {
	if !looksMangled(name) || len(name) > maxMangledLen {
		return name
	}
	defer func() {
		if recover() != nil {
			out = name
		}
	}()
	if isRust(name) {
		base, suffix := rustSuffix(name)
		s, err := demangle.ToString(base, demangle.MaxLength(16))
		if err != nil {
			return name
		}
		return s + suffix
	}
	s, err := demangle.ToString(name, demangle.LLVMStyle, demangle.NoRust, demangle.MaxLength(16))
	if err != nil {
		return name
	}
	return s
}

// isRust reports a v0 name (_R...) or a legacy one: an Itanium-looking
// _ZN...E whose last component is "h" and 16 hex digits, the hash rustc
// appends (rustc_symbol_mangling's legacy scheme).
func isRust(name string) bool {
	if strings.HasPrefix(name, "_R") {
		return true
	}
	base, _ := rustSuffix(name)
	if !strings.HasPrefix(base, "_ZN") || len(base) < 24 || !strings.HasSuffix(base, "E") {
		return false
	}
	h := base[len(base)-20 : len(base)-1]
	if h[:3] != "17h" {
		return false
	}
	for _, c := range h[3:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// rustSuffix splits a Rust symbol from what LLVM appended to it (.llvm.HEX
// for ThinLTO, .cold and the like): a v0 symbol at its first '.', which v0
// never uses; a legacy one, whose paths use "..", after the last "E." (the
// end of the hash). It returns the suffix to print after the demangled name:
// none for .llvm.HEX, as rustc-demangle drops it, else the suffix as it is.
func rustSuffix(name string) (base, suffix string) {
	i := strings.IndexByte(name, '.')
	if strings.HasPrefix(name, "_ZN") {
		if i = strings.LastIndex(name, "E."); i >= 0 {
			i++
		}
	}
	if i < 0 {
		return name, ""
	}
	base, suffix = name[:i], name[i:]
	if h, ok := strings.CutPrefix(suffix, ".llvm."); ok && strings.Trim(h, "0123456789ABCDEF@") == "" {
		suffix = ""
	}
	return base, suffix
}
