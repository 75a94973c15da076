package tracer

// Mappings recorded as they happen (issue #15). Reading /proc/PID/maps when a
// process is first sampled races its exec (ld.so is mapped, libc not yet)
// and its exit (the maps are gone). perf record instead asks the kernel for
// a record of every executable mmap, exec and fork; so does Ember: one
// software dummy event per CPU, for every task, with attr.mmap2 (device,
// inode or the file's build ID, and the path), comm with comm_exec (the
// exec), and task (forks), into a ring buffer per CPU. Each record is put
// into the process table (proc.Table.Exec, Fork, Mapped) as it is read,
// which holds the mapped file at once, and asks the unwinder for the
// process's tables; an exec deletes the old image's unwind entry first, so
// no sample of the new image is walked with the old one's tables.

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/proc"
)

// mmapRingPages is the data size of each CPU's ring, in pages (a power of
// two): 64 KiB holds about 500 mmap records, a burst of a few dozen execs.
const mmapRingPages = 16

// perfBitBuildID is perf_event_attr.build_id (bit 34, Linux 5.12): mmap2
// records carry the file's build ID instead of its device and inode.
const perfBitBuildID = 1 << 34

// perfRing is one CPU's event and its mapped ring buffer.
type perfRing struct {
	fd   int
	mem  []byte // the control page, then the data
	data []byte
	meta *unix.PerfEventMmapPage
}

// mmapRecorder reads the mmap, exec and fork records of every CPU.
type mmapRecorder struct {
	rings    []*perfRing
	epfd     int
	stopFD   int // an eventfd: written by close, wakes the reader
	buildIDs bool
	apply    func(recs []mmapRecord, images map[uint32]imageTimes)
	wg       sync.WaitGroup

	mu  sync.Mutex // one reader of the rings at a time (read, flush)
	buf []byte

	records, lost atomic.Uint64
	images        map[uint32]imageTimes // handed to apply, under mu
}

// mmapRecord is one record, decoded.
type mmapRecord struct {
	typ       uint32
	time      uint64
	pid, tid  uint32
	ppid      uint32 // fork
	exec      bool   // comm: the comm an exec set
	comm      string
	m         proc.Mapping
	buildID   []byte // mmap2 with PERF_RECORD_MISC_MMAP_BUILD_ID
	lostCount uint64
}

// openMmapEvent opens the side-band event of one CPU.
func openMmapEvent(cpu int, buildID bool) (int, error) {
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_SOFTWARE,
		Config:      unix.PERF_COUNT_SW_DUMMY,
		Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample_type: unix.PERF_SAMPLE_TIME,
		// mmap_data stays 0: executable mappings only. A wakeup for every
		// record (watermark of one byte): a 50 ms process's libraries
		// must be held before it exits.
		Bits: unix.PerfBitDisabled | unix.PerfBitMmap | unix.PerfBitMmap2 | unix.PerfBitComm |
			unix.PerfBitCommExec | unix.PerfBitTask | unix.PerfBitSampleIDAll | unix.PerfBitWatermark,
		Wakeup: 1,
	}
	if buildID {
		attr.Bits |= perfBitBuildID
	}
	fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("perf_event_open mmap records on CPU %d: %w", cpu, err)
	}
	return fd, nil
}

// newMmapRecorder opens one event per CPU, with build IDs if the kernel
// takes attr.build_id (decided by opening the event, not by version), and
// starts reading them into apply.
func newMmapRecorder(cpus []int, apply func([]mmapRecord, map[uint32]imageTimes)) (*mmapRecorder, error) {
	r := &mmapRecorder{apply: apply, epfd: -1, stopFD: -1, buildIDs: true}
	ok := false
	defer func() {
		if !ok {
			r.closeFDs()
		}
	}()
	var err error
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll for mmap records: %w", err)
	}
	if r.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd for mmap records: %w", err)
	}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, r.stopFD, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.stopFD)}); err != nil {
		return nil, fmt.Errorf("epoll for mmap records: %w", err)
	}
	for _, cpu := range cpus {
		fd, err := openMmapEvent(cpu, r.buildIDs)
		if err != nil && r.buildIDs && len(r.rings) == 0 {
			// attr.build_id is Linux 5.12: without it, device and inode.
			r.buildIDs = false
			fd, err = openMmapEvent(cpu, false)
		}
		if err != nil {
			return nil, err
		}
		ring := &perfRing{fd: fd}
		r.rings = append(r.rings, ring)
		page := unix.Getpagesize()
		if ring.mem, err = unix.Mmap(fd, 0, page*(1+mmapRingPages), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return nil, fmt.Errorf("map the mmap record ring of CPU %d: %w", cpu, err)
		}
		ring.meta = (*unix.PerfEventMmapPage)(unsafe.Pointer(&ring.mem[0]))
		ring.data = ring.mem[page:]
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return nil, fmt.Errorf("epoll for mmap records: %w", err)
		}
	}
	for _, ring := range r.rings {
		if err := enablePerf(ring.fd); err != nil {
			return nil, fmt.Errorf("enable mmap records: %w", err)
		}
	}
	ok = true
	r.wg.Add(1)
	go r.run()
	return r, nil
}

func (r *mmapRecorder) run() {
	defer r.wg.Done()
	events := make([]unix.EpollEvent, len(r.rings)+1)
	for {
		n, err := unix.EpollWait(r.epfd, events, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			slog.Debug("wait for mmap records", "err", err)
			return
		}
		for _, e := range events[:max(n, 0)] {
			if int(e.Fd) == r.stopFD {
				return
			}
		}
		r.flush()
	}
}

// flush reads every record written so far, in time order across CPUs, and
// applies them. The stack copies' walker calls it before walking a copy: a
// mapping made before the copy was taken is then in the process table.
func (r *mmapRecorder) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var recs []mmapRecord
	for _, ring := range r.rings {
		recs = r.readRing(ring, recs)
	}
	if len(recs) == 0 {
		return
	}
	slices.SortStableFunc(recs, func(a, b mmapRecord) int { return cmp.Compare(a.time, b.time) })
	if r.images == nil || len(r.images) >= maxImageTimes {
		r.images = map[uint32]imageTimes{}
	}
	r.apply(recs, r.images)
}

// readRing decodes the records between the ring's tail and head.
func (r *mmapRecorder) readRing(ring *perfRing, recs []mmapRecord) []mmapRecord {
	head := atomic.LoadUint64(&ring.meta.Data_head)
	tail := ring.meta.Data_tail
	for tail < head {
		var hdr [8]byte
		r.copyOut(ring, tail, hdr[:])
		n := uint64(binary.NativeEndian.Uint16(hdr[6:8]))
		if n < 8 || n > head-tail {
			break
		}
		if uint64(cap(r.buf)) < n {
			r.buf = make([]byte, n)
		}
		b := r.buf[:n]
		r.copyOut(ring, tail, b)
		tail += n
		if rec, ok := decodeRecord(b, r.buildIDs); ok {
			if rec.typ == unix.PERF_RECORD_LOST {
				r.lost.Add(rec.lostCount)
				continue
			}
			r.records.Add(1)
			recs = append(recs, rec)
		}
	}
	atomic.StoreUint64(&ring.meta.Data_tail, tail)
	return recs
}

// copyOut copies len(b) bytes from the ring at position pos, wrapping.
func (r *mmapRecorder) copyOut(ring *perfRing, pos uint64, b []byte) {
	size := uint64(len(ring.data))
	off := pos % size
	n := copy(b, ring.data[off:])
	if n < len(b) {
		copy(b[n:], ring.data)
	}
}

// decodeRecord decodes the record types asked for; the last 8 bytes of
// each are its time (sample_id_all with PERF_SAMPLE_TIME). buildIDs says
// the events asked for build IDs (attr.build_id): an MMAP2 record is read
// as carrying one only then, and only with a size of 1 to 20 bytes. A 6.18
// build seen here sets PERF_RECORD_MISC_MMAP_BUILD_ID on records that hold
// the device and inode (the size byte is then the device's major, 254):
// perf 6.1 aborts on them, and they would give a file a false build ID.
func decodeRecord(b []byte, buildIDs bool) (mmapRecord, bool) {
	le := binary.NativeEndian
	if len(b) < 8 { // shorter than perf_event_header
		return mmapRecord{}, false
	}
	rec := mmapRecord{typ: le.Uint32(b[0:4])}
	misc := le.Uint16(b[4:6])
	if rec.typ == unix.PERF_RECORD_LOST {
		if len(b) < 24 {
			return rec, false
		}
		rec.lostCount = le.Uint64(b[16:24])
		return rec, true
	}
	if len(b) < 24 {
		return rec, false
	}
	rec.time = le.Uint64(b[len(b)-8:])
	body := b[:len(b)-8]
	rec.pid, rec.tid = le.Uint32(b[8:12]), le.Uint32(b[12:16])
	switch rec.typ {
	case unix.PERF_RECORD_COMM:
		rec.exec = misc&unix.PERF_RECORD_MISC_COMM_EXEC != 0
		rec.comm = cString(body[16:])
	case unix.PERF_RECORD_FORK, unix.PERF_RECORD_EXIT:
		if len(body) < 24 {
			return rec, false
		}
		rec.ppid, rec.tid = le.Uint32(body[12:16]), le.Uint32(body[16:20])
	case unix.PERF_RECORD_MMAP2:
		if len(body) < 72 {
			return rec, false
		}
		m := proc.Mapping{
			Start:  le.Uint64(body[16:24]),
			Offset: le.Uint64(body[32:40]),
		}
		m.Limit = m.Start + le.Uint64(body[24:32])
		if n := int(body[40]); buildIDs && misc&unix.PERF_RECORD_MISC_MMAP_BUILD_ID != 0 && n >= 1 && n <= 20 {
			rec.buildID = slices.Clone(body[44 : 44+n])
			m.BuildID = hex.EncodeToString(rec.buildID)
		} else {
			m.Dev = unix.Mkdev(le.Uint32(body[40:44]), le.Uint32(body[44:48]))
			m.Inode = le.Uint64(body[48:56])
		}
		prot, flags := le.Uint32(body[64:68]), le.Uint32(body[68:72])
		m.Perms = perms(prot, flags)
		m.Path = cString(body[72:])
		if m.Path == "//anon" || m.Path == "//anon (deleted)" {
			m.Path = ""
		}
		rec.m = m
	default:
		return rec, false
	}
	return rec, true
}

// perms writes prot and flags as /proc/PID/maps does ("r-xp").
func perms(prot, flags uint32) string {
	b := []byte("---p")
	if prot&unix.PROT_READ != 0 {
		b[0] = 'r'
	}
	if prot&unix.PROT_WRITE != 0 {
		b[1] = 'w'
	}
	if prot&unix.PROT_EXEC != 0 {
		b[2] = 'x'
	}
	if flags&unix.MAP_SHARED != 0 {
		b[3] = 's'
	}
	return string(b)
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func (r *mmapRecorder) close() {
	if r == nil {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(r.stopFD, one[:])
	r.wg.Wait()
	r.closeFDs()
}

func (r *mmapRecorder) closeFDs() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ring := range r.rings {
		if ring.mem != nil {
			unix.Munmap(ring.mem)
		}
		unix.Close(ring.fd)
	}
	r.rings = nil
	if r.epfd >= 0 {
		unix.Close(r.epfd)
	}
	if r.stopFD >= 0 {
		unix.Close(r.stopFD)
	}
}

// The records of each read are applied in time order, but one read takes
// the rings one CPU after another: a process that moves to another CPU in
// the middle of its exec can have its exec record (comm) on one CPU written
// just after that ring was read, and its new image's first mapping on the
// next, read already. mmapRecorder.images keeps, per process, the time of the newest
// exec and mapping applied, so that either record coming a read late is
// recognised.
type imageTimes struct{ exec, mapped uint64 }

// maxImageTimes bounds mmapRecorder.images: past it the times are forgotten (a
// read late comes within milliseconds).
const maxImageTimes = 8192

// applyMmapRecords puts records into the process table, in time order: an
// exec starts the process afresh and drops its old unwind entry (its samples
// from now on are copied until the new image's tables are in), a fork
// copies what its parent maps, and each executable mapping is added with
// its file held. The unwinder is then asked once for each process changed.
// Where the tracer profiles some processes only, records of processes it
// does not know are left out (their samples read /proc as before).
//
// images is the recorder's (mmapRecorder.images), passed in by its flush:
// the recorder's first flush can run before Start has stored the recorder
// in t.mmaps.
func (t *Tracer) applyMmapRecords(recs []mmapRecord, images map[uint32]imageTimes) {
	filtered := len(t.cfg.PIDs) > 0 || t.cfg.FollowForks || len(t.cfg.Cgroups) > 0
	self := uint32(os.Getpid())
	changed, invalidate := map[uint32]bool{}, map[uint32]bool{}
	for i := range recs {
		rec := &recs[i]
		pid := int(rec.pid)
		if rec.pid == self && !t.cfg.IncludeSelf || rec.pid == 0 {
			continue
		}
		switch rec.typ {
		case unix.PERF_RECORD_COMM:
			if !rec.exec || filtered && t.procs.Get(pid) == nil {
				continue
			}
			it := images[rec.pid]
			late := rec.time < it.mapped
			t.procs.Exec(pid, rec.comm)
			if t.unw != nil {
				t.unw.invalidate(rec.pid, true)
			}
			if t.copies != nil {
				t.copies.execed(rec.pid)
			}
			if late {
				// A mapping of the new image was applied in an earlier read:
				// the process moved to another CPU during its exec, and that
				// CPU's ring was read before this one's record was written.
				// Exec dropped it; read the process whole.
				slog.Debug("exec record read after a mapping of its new image", "pid", pid)
				if _, err := t.procs.Add(pid); err == nil {
					invalidate[rec.pid] = true
				}
			}
			it.exec = max(it.exec, rec.time)
			images[rec.pid] = it
		case unix.PERF_RECORD_FORK:
			if rec.pid == rec.ppid {
				continue // a thread
			}
			// Its tables are asked for at its first sample: most forks
			// exec at once, and their parent's tables would be wasted.
			t.procs.Fork(int(rec.ppid), pid)
		case unix.PERF_RECORD_MMAP2:
			if !rec.m.Executable() || filtered && t.procs.Get(pid) == nil {
				continue
			}
			it := images[rec.pid]
			if rec.time < it.exec {
				// The image it exec'd away from, read late (as above).
				continue
			}
			it.mapped = max(it.mapped, rec.time)
			images[rec.pid] = it
			var f *os.File
			if rec.m.Inode == 0 && rec.m.Path != "" && rec.m.Path[0] == '/' {
				var err error
				if f, err = identify(pid, &rec.m); err != nil {
					slog.Debug("mmap record", "pid", pid, "err", err)
				}
			}
			if f == nil && rec.m.Inode == 0 && rec.m.BuildID != "" {
				// Not identified: read it whole (if it still runs).
				if _, err := t.procs.Add(pid); err == nil {
					invalidate[rec.pid] = true
				}
				continue
			}
			if err := t.procs.Mapped(pid, rec.m, f); err != nil {
				// Not known (it ran before Ember did, or its exec record
				// was lost), or its file not identified: read it whole.
				if _, err := t.procs.Add(pid); err != nil {
					slog.Debug("read process of a mmap record", "pid", pid, "err", err)
					continue
				}
			}
			if rec.m.Inode != 0 || rec.m.BuildID != "" || rec.m.Path == "[vdso]" {
				invalidate[rec.pid] = true
			} else {
				changed[rec.pid] = true // JIT code: walked through with frame pointers
			}
		}
	}
	if t.unw != nil {
		for pid := range invalidate {
			t.unw.invalidate(pid, false)
		}
		for pid := range changed {
			if !invalidate[pid] {
				t.unw.enqueue(pid, false)
			}
		}
	}
}
