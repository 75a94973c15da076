package unwind

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestSpace(t *testing.T) {
	s := NewSpace(100)
	a, _ := s.Alloc(30)
	b, _ := s.Alloc(30)
	c, _ := s.Alloc(30)
	if a != 0 || b != 30 || c != 60 || s.Free() != 10 {
		t.Fatalf("allocs %d %d %d, free %d", a, b, c, s.Free())
	}
	if _, err := s.Alloc(11); !errors.Is(err, ErrNoSpace) {
		t.Errorf("over-allocation: %v", err)
	}
	if err := s.Release(b, 30); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(b, 30); err == nil {
		t.Error("double release accepted")
	}
	if err := s.Release(a, 30); err != nil {
		t.Fatal(err)
	}
	// a and b merged: 60 rows fit at 0.
	if got, err := s.Alloc(60); err != nil || got != 0 {
		t.Errorf("Alloc(60) = %d, %v after merging", got, err)
	}
}

// TestSpaceRandom checks against a bitmap that ranges never overlap and
// that every row is accounted for.
func TestSpaceRandom(t *testing.T) {
	const capacity = 1000
	s := NewSpace(capacity)
	used := make([]bool, capacity)
	type alloc struct{ first, n uint32 }
	var live []alloc
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		if rng.IntN(2) == 0 || len(live) == 0 {
			n := uint32(rng.IntN(50) + 1)
			first, err := s.Alloc(n)
			if err != nil {
				continue
			}
			for i := first; i < first+n; i++ {
				if used[i] {
					t.Fatalf("row %d handed out twice", i)
				}
				used[i] = true
			}
			live = append(live, alloc{first, n})
		} else {
			k := rng.IntN(len(live))
			a := live[k]
			live = append(live[:k], live[k+1:]...)
			if err := s.Release(a.first, a.n); err != nil {
				t.Fatal(err)
			}
			for i := a.first; i < a.first+a.n; i++ {
				used[i] = false
			}
		}
		var inUse uint32
		for _, u := range used {
			if u {
				inUse++
			}
		}
		if s.Free()+inUse != capacity {
			t.Fatalf("free %d + used %d != %d", s.Free(), inUse, capacity)
		}
	}
}
