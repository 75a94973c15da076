package symbolize

import (
	"strconv"
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
	// A PLT stub's name (pltStubs) is the function's with "@plt" after it,
	// which perf demangles as "operator delete(void*)@plt".
	if base, ok := strings.CutSuffix(name, "@plt"); ok {
		return demangleName(base) + "@plt"
	}
	defer func() {
		if recover() != nil {
			out = name
		}
	}()
	if isRust(name) {
		base, suffix := rustSuffix(name)
		if strings.HasPrefix(base, "_ZN") {
			base = keepLegacyUnderscores(base)
		}
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

// keepLegacyUnderscores works around the demangle package's legacy Rust
// demangler, which drops the first character of an identifier that starts
// with '_' (it takes it for v0's separator after a length, which legacy
// names do not have): std::sys::backtrace::__rust_begin_short_backtrace,
// on every Rust thread's stack, came out with one underscore. Each such
// identifier gets one more '_' for the package to drop. A name that does not
// parse as _ZN{<length><bytes>}E is returned unchanged.
func keepLegacyUnderscores(name string) string {
	rest, ok := strings.CutPrefix(name, "_ZN")
	if !ok || !strings.Contains(rest, "_") {
		return name
	}
	var b strings.Builder
	b.WriteString("_ZN")
	for len(rest) > 0 && rest[0] != 'E' {
		i := 0
		for i < len(rest) && i < 6 && '0' <= rest[i] && rest[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n <= 0 || i+n > len(rest) {
			return name
		}
		id := rest[i : i+n]
		if id[0] == '_' {
			b.WriteString(strconv.Itoa(n + 1))
			b.WriteByte('_')
		} else {
			b.WriteString(rest[:i])
		}
		b.WriteString(id)
		rest = rest[i+n:]
	}
	b.WriteString(rest)
	return b.String()
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
// the suffix as it is, less a .llvm.HEX in it, which rustc-demangle drops.
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
	// rustc-demangle drops ".llvm.HEX" wherever it is in the suffix: a
	// static's "E.0.llvm.HEX" keeps ".0".
	if j := strings.Index(suffix, ".llvm."); j >= 0 && strings.Trim(suffix[j+len(".llvm."):], "0123456789ABCDEF@") == "" {
		suffix = suffix[:j]
	}
	return base, suffix
}
