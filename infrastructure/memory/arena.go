package memory

// arena holds the keys and values of a StateStore end to end in large byte
// chunks. A []byte holds no pointers, so the garbage collector never looks
// inside a chunk: millions of entries cost it one object per chunk instead
// of two per entry. The zero value, with chunkSize set, is an empty arena.
// Not safe for concurrent use: the StateStore's lock guards it.
type arena struct {
	chunks [][]byte
	// live counts, per chunk, the bytes of the entries still in use. A
	// chunk whose count falls to zero is given back at once, without
	// waiting for a compaction: entries written together tend to die
	// together (a burst of keys with one TTL, say).
	live []int
	// free lists the numbers of chunks given back, for reuse, so that a
	// slot's chunk number stays small.
	free []uint32
	// cur is the chunk being filled, fill the bytes used in it; filling
	// says whether there is one.
	cur       uint32
	fill      int
	filling   bool
	size      int // bytes held by all chunks
	liveBytes int // bytes of the entries in use
	chunkSize int
}

// alloc reserves n bytes and returns where they are and the bytes to write.
// An entry larger than a quarter chunk gets a chunk of its own: put in the
// chunk being filled, it could leave up to its size unused at the chunk's
// end.
func (a *arena) alloc(n int) (chunk, off uint32, buf []byte) {
	a.liveBytes += n
	if n > a.chunkSize/4 {
		c := a.newChunk(n)
		a.live[c] = n
		return c, 0, a.chunks[c]
	}
	if !a.filling || a.fill+n > len(a.chunks[a.cur]) {
		if a.filling && a.live[a.cur] == 0 {
			a.drop(a.cur)
		}
		a.cur, a.fill, a.filling = a.newChunk(a.chunkSize), 0, true
	}
	off = uint32(a.fill)
	a.fill += n
	a.live[a.cur] += n
	return a.cur, off, a.chunks[a.cur][off:a.fill:a.fill]
}

// release marks n bytes of chunk as no longer in use.
func (a *arena) release(chunk uint32, n int) {
	a.live[chunk] -= n
	a.liveBytes -= n
	if a.live[chunk] != 0 {
		return
	}
	if a.filling && chunk == a.cur {
		// Nothing in it is used any more: fill it again from the start.
		a.fill = 0
		return
	}
	a.drop(chunk)
}

func (a *arena) newChunk(n int) uint32 {
	a.size += n
	buf := make([]byte, n)
	if k := len(a.free); k > 0 {
		c := a.free[k-1]
		a.free = a.free[:k-1]
		a.chunks[c], a.live[c] = buf, 0
		return c
	}
	a.chunks = append(a.chunks, buf)
	a.live = append(a.live, 0)
	return uint32(len(a.chunks) - 1)
}

func (a *arena) drop(chunk uint32) {
	a.size -= len(a.chunks[chunk])
	a.chunks[chunk] = nil
	a.free = append(a.free, chunk)
}

// dead is the number of bytes held by chunks but used by no entry, except
// the unwritten end of the chunk being filled, which the next writes use.
func (a *arena) dead() int {
	d := a.size - a.liveBytes
	if a.filling {
		d -= len(a.chunks[a.cur]) - a.fill
	}
	return d
}

// key and value return the bytes of sl's entry, in place: a caller that
// keeps them must copy.
func (a *arena) key(sl slot) []byte {
	return a.chunks[sl.chunk][sl.off : sl.off+sl.klen]
}

func (a *arena) value(sl slot) []byte {
	start := sl.off + sl.klen
	return a.chunks[sl.chunk][start : start+sl.vlen]
}
