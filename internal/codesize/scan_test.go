package codesize

import "strings"

// cFunction is one function definition found in C source.
type cFunction struct {
	name  string
	lines int // from the line of its name to its closing brace
}

// cFunctions finds the function definitions in C source: top-level brace
// blocks whose header has a parameter list and no '=' (an initializer) and
// does not start with struct, union or enum. Comments, strings, character
// literals and preprocessor lines are blanked first, so braces inside them
// do not count. It is a scanner for this repository's BPF programs, not a C
// parser.
func cFunctions(src string) []cFunction {
	code := blank(src)
	var fns []cFunction
	depth := 0
	start := 0 // offset where the current top-level declaration begins
	headerEnd := 0
	for i := 0; i < len(code); i++ {
		switch code[i] {
		case ';':
			if depth == 0 {
				start = i + 1
			}
		case '{':
			if depth == 0 {
				headerEnd = i
			}
			depth++
		case '}':
			depth--
			if depth == 0 {
				header := code[start:headerEnd]
				if name, ok := functionName(header); ok {
					first := start + strings.Index(header, name)
					fns = append(fns, cFunction{
						name:  name,
						lines: strings.Count(code[first:i], "\n") + 1,
					})
				}
				start = i + 1
			}
		}
	}
	return fns
}

// functionName returns the identifier before a header's parameter list.
func functionName(header string) (string, bool) {
	h := strings.TrimSpace(header)
	paren := strings.LastIndex(h, "(")
	if paren < 0 || strings.Contains(h, "=") {
		return "", false
	}
	for _, kw := range []string{"struct", "union", "enum"} {
		if strings.HasPrefix(h, kw+" ") || strings.HasPrefix(h, kw+"{") {
			return "", false
		}
	}
	// The parameter list is the first top-level '(' after the name: find the
	// last '(' at nesting zero (SEC("...") comes before it and is closed).
	depth := 0
	open := -1
	for i := len(h) - 1; i >= 0; i-- {
		switch h[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				open = i
			}
		}
		if open >= 0 {
			break
		}
	}
	if open <= 0 {
		return "", false
	}
	end := open
	for end > 0 && h[end-1] == ' ' {
		end--
	}
	begin := end
	for begin > 0 && isIdent(h[begin-1]) {
		begin--
	}
	if begin == end {
		return "", false
	}
	return h[begin:end], true
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// blank replaces comments, string and character literals and preprocessor
// lines with spaces, keeping newlines so line counts stay true.
func blank(src string) string {
	b := []byte(src)
	lineStart := true
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case lineStart && c == '#':
			// A preprocessor line, with its backslash continuations.
			for ; i < len(b) && !(b[i] == '\n' && b[i-1] != '\\'); i++ {
				if b[i] != '\n' {
					b[i] = ' '
				}
			}
			lineStart = true
			continue
		case c == '/' && i+1 < len(b) && b[i+1] == '/':
			for ; i < len(b) && b[i] != '\n'; i++ {
				b[i] = ' '
			}
			lineStart = true
			continue
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			b[i], b[i+1] = ' ', ' '
			for i += 2; i < len(b) && !(b[i] == '*' && i+1 < len(b) && b[i+1] == '/'); i++ {
				if b[i] != '\n' {
					b[i] = ' '
				}
			}
			if i+1 < len(b) {
				b[i], b[i+1] = ' ', ' '
				i++
			}
		case c == '"' || c == '\'':
			for i++; i < len(b) && b[i] != c; i++ {
				if b[i] == '\\' {
					b[i] = ' '
					i++
				}
				if i < len(b) && b[i] != '\n' {
					b[i] = ' '
				}
			}
		}
		if c == '\n' {
			lineStart = true
		} else if c != ' ' && c != '\t' {
			lineStart = false
		}
	}
	return string(b)
}
