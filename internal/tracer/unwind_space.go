package tracer

import (
	"errors"
	"fmt"

	"github.com/emberprof/ember/unwind"
)

// A table's room in the kernel maps: a range in each of the unwind_rows,
// unwind_rules and unwind_pages arrays, and an id (its unwind_tables index),
// each handed out by an unwind.Space. Allocating and freeing go through one
// list of claims, so that a table's ranges are taken, and given back, all
// together.

// claim is one range of a table: n entries of space from *first.
type claim struct {
	space *unwind.Space
	n     uint32
	first *uint32
}

// claims lists the ranges of the table ti with id: the sizes come from ti,
// the starts are written to (or read from) ti and id.
func (u *unwinder) claims(ti *unwind.TableInfo, id *uint32) []claim {
	return []claim{
		{u.rows, ti.NumRows, &ti.FirstRow},
		{u.rules, ti.NumRules, &ti.FirstRule},
		{u.pages, ti.NumPages, &ti.FirstPage},
		{u.ids, 1, id},
	}
}

// allocAll takes every range of cs, or none: a failed one gives back those
// taken before it.
func allocAll(cs []claim) error {
	for i, c := range cs {
		first, err := c.space.Alloc(c.n)
		if err != nil {
			releaseAll(cs[:i])
			return err
		}
		*c.first = first
	}
	return nil
}

// releaseAll gives back every range of cs.
func releaseAll(cs []claim) {
	for _, c := range cs {
		_ = c.space.Release(*c.first, c.n)
	}
}

// place writes a table into the maps, rows, rules and pages first and its
// unwind_tables entry last, and returns it with one reference. When the maps
// are full it drops the tables no process uses and tries once more.
func (u *unwinder) place(key string, t *unwind.Table, path string) (*loadedTable, error) {
	e, err := t.Encoded()
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if lt := u.tables[key]; lt != nil { // placed meanwhile
		lt.refs++
		return lt, nil
	}
	lt := &loadedTable{key: key, size: int64(e.Size()), refs: 1}
	ti := &lt.info
	ti.Base, ti.Arch = e.Base, e.Arch
	ti.NumRows, ti.NumRules, ti.NumPages = uint32(e.NumRows()), uint32(e.NumRules()), uint32(e.NumPages())
	cs := u.claims(ti, &lt.id)
	err = allocAll(cs)
	if errors.Is(err, unwind.ErrNoSpace) {
		u.evictUnused()
		err = allocAll(cs)
	}
	if err != nil {
		return nil, err
	}
	err = writeArray(u.objs.UnwindRows, ti.FirstRow, e.Rows, unwind.RowSize)
	if err == nil {
		err = writeArray(u.objs.UnwindRules, ti.FirstRule, e.Rules, unwind.RuleSize)
	}
	if err == nil {
		err = writeArray(u.objs.UnwindPages, ti.FirstPage, e.Pages, unwind.PageSize)
	}
	if err == nil {
		b, _ := ti.MarshalBinary()
		err = u.objs.UnwindTables.Put(lt.id, b)
	}
	if err != nil {
		u.free(lt)
		return nil, fmt.Errorf("write table of %s: %w", path, err)
	}
	u.tables[key] = lt
	u.stats.Bytes += lt.size
	if lt.size > u.stats.LargestB {
		u.stats.Largest, u.stats.LargestB = path, lt.size
	}
	return lt, nil
}

// evictUnused drops the tables no process uses. u.mu is held.
func (u *unwinder) evictUnused() {
	for key, lt := range u.tables {
		if lt.refs > 0 {
			continue
		}
		// No unwind_procs entry points at it: clear its entry, then reuse.
		b, _ := unwind.TableInfo{}.MarshalBinary()
		if err := u.objs.UnwindTables.Put(lt.id, b); err != nil {
			continue
		}
		delete(u.tables, key)
		u.stats.Bytes -= lt.size
		u.free(lt)
	}
}

// free returns a table's ranges. u.mu is held.
func (u *unwinder) free(lt *loadedTable) {
	releaseAll(u.claims(&lt.info, &lt.id))
}
