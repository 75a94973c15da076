package symbolize

import (
	"fmt"
	"os"
)

// childEnv, when set to an ELF path, makes the test binary act as
// `ember symbolize --exe PATH`: the benchmark runs it as a child process to
// measure its time and peak RSS exactly as it measures llvm-symbolizer's.
const childEnv = "EMBER_SYMBOLIZE_CHILD"

func benchChild() {
	o, err := OpenObject(os.Getenv(childEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := SymbolizeStream(os.Stdin, os.Stdout, o, true); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(0)
}
