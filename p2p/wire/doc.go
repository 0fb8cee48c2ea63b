// Package wire is what every Mycel stream protocol reads and writes with:
// uvarints and length-prefixed frames whose lengths are bounded before
// anything is allocated, a decoder for the fields of a frame, tensors as a
// header (dtype, shape) and raw little-endian values, and Conn, a stream
// whose reads and writes have deadlines even where the stream ignores
// SetDeadline.
//
// # The rules
//
// A uvarint is an unsigned LEB128 integer: 7 bits a byte, least significant
// group first, the high bit set on every byte but the last, at most 10
// bytes, and in its shortest form. Anything else is a protocol error
// (ErrProtocol); the encoders here only ever write the shortest form.
//
// A frame is a uvarint length L and L bytes. Every reader takes a bound and
// refuses a larger L (ErrFrameTooLarge) before it reads or allocates the
// body, so a peer cannot make a node allocate more than the bound by
// announcing a length.
//
// A tensor is one byte of dtype (kernels.F32, F16 or BF16), one byte of
// rank (1..MaxRank), the dims as uvarints (each at least 1) and then exactly
// product(dims) values, row-major and little-endian; it runs to the end of
// the frame that holds it. The element count is checked against the bytes
// present before anything is multiplied.
//
// Errors about the bytes a peer sent wrap ErrProtocol. The end of a stream
// before the first byte of a frame or uvarint is io.EOF (a clean end); the
// end inside one is io.ErrUnexpectedEOF.
//
// docs/protocol.md specifies the protocols built on these pieces.
package wire
