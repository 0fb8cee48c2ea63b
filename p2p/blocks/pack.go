package blocks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// The pack format. A pack is a file of records written one after another:
//
//	offset  size  field
//	0       4     magic "mycB"
//	4       1     state: 'L' live, 'D' deleted (rewritten in place)
//	5       1     zero
//	6       2     key length k (little endian), 1..255
//	8       4     data length n, at most MaxBlockSize
//	12      4     CRC-32C of the data
//	16      4     CRC-32C of bytes 0..3, 6..15 and the key
//	20      k     key: the block's multihash
//	20+k    n     data
//
// The header checksum does not cover the state byte, so a delete is one
// byte written in place. A block is checked against its multihash before
// it is written; the data checksum is what a read checks, to find what the
// disk damaged since (hardware CRC-32C costs a small fraction of a SHA-256).
const (
	packMagic    = "mycB"
	recHeader    = 20
	stateLive    = 'L'
	stateDead    = 'D'
	maxKeyLen    = 255
	packSuffix   = ".pack"
	packsDir     = "packs"
	syncedFile   = "synced.json"
	scanChunk    = 1 << 20
	maxRecordLen = recHeader + maxKeyLen + MaxBlockSize
)

// packLimit is the size past which the store starts a new pack. A var so
// that tests can make packs small.
var packLimit int64 = 512 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeHeader is the header and key of a live record for data.
func encodeHeader(key string, data []byte) []byte {
	h := make([]byte, recHeader+len(key))
	copy(h, packMagic)
	h[4] = stateLive
	binary.LittleEndian.PutUint16(h[6:], uint16(len(key)))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[12:], dataSum(data))
	copy(h[recHeader:], key)
	binary.LittleEndian.PutUint32(h[16:], headerSum(h))
	return h
}

// dataSum is the checksum of a block's data.
func dataSum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// headerSum checksums a header and key, leaving out the state byte and the
// header checksum itself.
func headerSum(h []byte) uint32 {
	c := crc32.Update(0, castagnoli, h[0:4])
	c = crc32.Update(c, castagnoli, h[6:16])
	return crc32.Update(c, castagnoli, h[recHeader:])
}

// record is one record found in a pack.
type record struct {
	off  int64 // of the header
	key  string
	size int
	sum  uint32 // of the data
	live bool
}

func (r record) dataOff() int64 { return r.off + recHeader + int64(len(r.key)) }
func (r record) end() int64     { return r.dataOff() + int64(r.size) }

// parseHeader reads the record whose header starts buf, at offset off of a
// file of fileSize bytes. buf holds the header and key, or what the file
// has of them. It fails on anything a complete record would not have: a
// bad magic or checksum, impossible lengths, data past the end of the file.
func parseHeader(buf []byte, off, fileSize int64) (record, bool) {
	if len(buf) < recHeader || string(buf[:4]) != packMagic || buf[5] != 0 {
		return record{}, false
	}
	st := buf[4]
	kl := int(binary.LittleEndian.Uint16(buf[6:]))
	n := int64(binary.LittleEndian.Uint32(buf[8:]))
	if (st != stateLive && st != stateDead) || kl == 0 || kl > maxKeyLen || n > MaxBlockSize || len(buf) < recHeader+kl {
		return record{}, false
	}
	if headerSum(buf[:recHeader+kl]) != binary.LittleEndian.Uint32(buf[16:]) {
		return record{}, false
	}
	r := record{off: off, key: string(buf[recHeader : recHeader+kl]), size: int(n),
		sum: binary.LittleEndian.Uint32(buf[12:]), live: st == stateLive}
	if r.end() > fileSize {
		return record{}, false // cut short
	}
	return r, true
}

// scanPack calls fn on each record of f, in file order, and returns the
// offset where the records end. A region that holds no valid record (a
// write cut short by a crash, a hole left by a failed write, damage) is
// skipped: the scan resumes at the next valid header, if any.
func scanPack(f *os.File, fn func(record)) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	buf := make([]byte, recHeader+maxKeyLen)
	var off, end int64
	for off+recHeader <= size {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if r, ok := parseHeader(buf[:n], off, size); ok {
			fn(r)
			off = r.end()
			end = off
			continue
		}
		next, err := findHeader(f, off+1, size)
		if err != nil {
			return 0, err
		}
		if next < 0 {
			log.Warn("ignoring a damaged or unfinished tail of a pack", "pack", f.Name(), "offset", off, "size", size)
			break
		}
		log.Warn("skipping a damaged region of a pack", "pack", f.Name(), "from", off, "to", next)
		off = next
	}
	return end, nil
}

// findHeader is the offset of the first valid record header at or after
// from, or -1.
func findHeader(f *os.File, from, size int64) (int64, error) {
	buf := make([]byte, scanChunk+recHeader+maxKeyLen)
	magic := []byte(packMagic)
	for pos := from; pos+recHeader <= size; pos += scanChunk {
		n, err := f.ReadAt(buf, pos)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		b := buf[:n]
		for i := 0; i < min(len(b), scanChunk); {
			j := bytes.Index(b[i:], magic)
			if j < 0 {
				break
			}
			k := i + j
			if k >= scanChunk {
				break // the next chunk starts there
			}
			if _, ok := parseHeader(b[k:], pos+int64(k), size); ok {
				return pos + int64(k), nil
			}
			i = k + 1
		}
	}
	return -1, nil
}

// packName is the file name of pack id.
func packName(id uint64) string { return fmt.Sprintf("%016x%s", id, packSuffix) }
