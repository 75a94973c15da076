package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// The floor rows: what a program costs on a hook before it does anything.
// Attaching any program to sys_exit sends every system call of every thread
// through the kernel's slow path, and a program on sched_switch runs twice
// per round trip of the ping-pong; empty programs on a method's hooks
// measure that part, which no work inside the programs can take back, so
// that each method's rate is read against what the hooks it needs allow.

// methodHooks are the hooks each off-CPU method attaches a program to on
// every switch or system call (the rare fork, exec and exit programs left
// out): task-work's callbacks are queued by its switch program, not
// attached.
var methodHooks = map[string]string{
	"task-work": "tp_btf/sched_switch",
	"sys-exit":  "tp_btf/sched_switch,tp_btf/sys_exit",
	"raw-tp":    "raw_tp/sched_switch,raw_tp/sys_exit",
}

// rseqHooks are a return-to-user hook Ember does not use yet: the kernel
// traces rseq_update where a thread registered for restartable sequences
// (every glibc thread since 2.35) goes back to user mode after a switch, a
// place where sys-exit's work could be done without the system calls' slow
// path, for such threads only.
const rseqHooks = "tp_btf/sched_switch,tp_btf/rseq_update"

// cfgFloor is the configuration of empty programs on hooks (methodHooks,
// rseqHooks).
func cfgFloor(hooks string) string { return "floor:" + hooks }

// hooksOf returns the hooks of a cfgFloor configuration.
func hooksOf(cfg string) (string, bool) { return strings.CutPrefix(cfg, "floor:") }

// floorName is a floor configuration's description in the results: what
// holds the hooks.
func floorName(hooks, of string) string {
	return fmt.Sprintf("empty BPF programs on %s (%s)", strings.ReplaceAll(hooks, ",", ", "), of)
}

// hooksMain is `emberbench hooks [-probe] HOOK[,HOOK...]`: it attaches a
// program that returns at once to each hook (tp_btf/NAME or raw_tp/NAME),
// says "attached" and holds them until SIGINT or SIGTERM; with -probe it
// exits once they are attached.
func hooksMain(args []string) error {
	probe := len(args) > 0 && args[0] == "-probe"
	if probe {
		args = args[1:]
	}
	if len(args) != 1 {
		return errors.New("usage: emberbench hooks [-probe] HOOK[,HOOK...]")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return err
	}
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	for _, hook := range strings.Split(args[0], ",") {
		l, err := attachEmpty(hook)
		if err != nil {
			return fmt.Errorf("%s: %w", hook, err)
		}
		links = append(links, l)
	}
	if probe {
		return nil
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	fmt.Println("attached")
	<-sig
	return nil
}

// attachEmpty loads a program that returns 0 and attaches it to hook.
func attachEmpty(hook string) (link.Link, error) {
	kind, name, ok := strings.Cut(hook, "/")
	if !ok {
		return nil, errors.New("a hook is tp_btf/NAME or raw_tp/NAME")
	}
	spec := &ebpf.ProgramSpec{License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}}
	switch kind {
	case "tp_btf":
		spec.Type, spec.AttachType, spec.AttachTo = ebpf.Tracing, ebpf.AttachTraceRawTp, name
	case "raw_tp":
		spec.Type = ebpf.RawTracepoint
	default:
		return nil, errors.New("a hook is tp_btf/NAME or raw_tp/NAME")
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer prog.Close() // the link holds it
	if kind == "tp_btf" {
		return link.AttachTracing(link.TracingOptions{Program: prog})
	}
	return link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
}
