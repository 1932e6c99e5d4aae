/*
 * chunker.h - content-defined chunking (FastCDC-style gear chunker).
 *
 * Contract: pure functions over caller buffers; safe from any thread.
 * A boundary depends only on the 64 bytes before it and on the distance to
 * the previous boundary, so an insertion or deletion moves the boundaries
 * near the edit and no others ("boundaries are stable under insertions").
 *
 * Sizes (min / average / max) are 32 / 128 / 512 KiB.  Model files are
 * dominated by tensors of several MiB, so 128 KiB keeps deduplication fine
 * grained while the catalog stays near 0.05% of the data (60 bytes of
 * catalog per 128 KiB chunk) and zstd sees whole 128 KiB blocks.  Normalised
 * chunking (a stricter mask before the average, a looser one after) keeps
 * sizes close to the average.
 */
#ifndef LLMFS_CHUNKER_H
#define LLMFS_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#define CDC_MIN (32u * 1024)
#define CDC_AVG (128u * 1024)
#define CDC_MAX (512u * 1024)

/*
 * Returns the length of the next chunk at the start of buf[0..len).
 * Returns 0 when no boundary lies in buf and more data may follow (len <
 * CDC_MAX and !eof).  With eof set, a tail shorter than a chunk is returned
 * whole.  Never returns more than CDC_MAX.
 */
size_t cdc_next(const uint8_t *buf, size_t len, int eof);

/*
 * cdc_next() over the bytes a[0..alen) followed by b[0..blen), without
 * joining them: the same cut as cdc_next() of the two laid end to end.
 */
size_t cdc_next2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int eof);

#endif
