/* ChaCha20-Poly1305 of one data datagram (RFC 8439), from OpenSSL's ChaCha20 and Poly1305.
 * Needs OpenSSL 3.0 or newer (EVP_MAC). Modelled on aioquic's src/aioquic/_crypto.c. */
#include "datapath.h"

#include <openssl/crypto.h>
#include <openssl/err.h>

/* RFC 8439's ChaCha20-Poly1305 from OpenSSL's ChaCha20 and Poly1305 rather than its AEAD.
 * The AEAD makes a short keystream call for the Poly1305 key block, one for a payload's last
 * partial block and one more per extra piece of input, and on an AVX-512 machine each such
 * call costs about as much as a third of a 1,420-byte packet's whole cipher (a C loop over
 * EVP, docs/PERFORMANCE.md). Here one call makes the keystream of the key block and the
 * whole payload, the payload is XORed with it, and Poly1305 runs over what went out. */
/* One Poly1305 context for every session, made at import: its key is new for each packet
 * (block 0 of the packet's keystream), so it keeps nothing of a session between packets, and
 * the GIL is held while it runs. One for each sealer and opener cost 0.6 KiB a session. */
static EVP_MAC_CTX *poly;

int dp_aead_load(void)
{
    if (poly != NULL)
        return 0;
    EVP_MAC *poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
    poly = poly1305 == NULL ? NULL : EVP_MAC_CTX_new(poly1305);
    EVP_MAC_free(poly1305);  /* (the context holds its own reference) */
    if (poly == NULL) {
        /* native.load() takes this as "no extension" and the node runs the Python twin. */
        ERR_clear_error();
        PyErr_SetString(PyExc_ImportError, "OpenSSL offers no Poly1305");
        return -1;
    }
    return 0;
}

/* Block 0 (its first 32 bytes are the Poly1305 key) and the payload's blocks, made from
 * zeros. The GIL is held throughout, so one buffer serves every packet. */
#define BLOCK 64
#define STREAM_LEN (BLOCK + ((MAX_PAYLOAD + BLOCK - 1) / BLOCK) * BLOCK)
static const unsigned char zeros[STREAM_LEN];
static unsigned char stream[STREAM_LEN];

void dp_aead_free(Aead *aead)
{
    EVP_CIPHER_CTX_free(aead->chacha);
    aead->chacha = NULL;
}

/* 0, or -1 with CryptoError set. */
int dp_aead_init(Aead *aead, const unsigned char *key)
{
    static const unsigned char no_nonce[16] = {0};
    dp_aead_free(aead);
    aead->chacha = EVP_CIPHER_CTX_new();
    if (aead->chacha == NULL
        || !EVP_EncryptInit_ex(aead->chacha, EVP_chacha20(), NULL, key, no_nonce)) {
        dp_aead_free(aead);
        PyErr_SetString(dp_crypto_error, "OpenSSL refused the ChaCha20-Poly1305 key");
        return -1;
    }
    return 0;
}

/* The keystream for a payload of ``length`` bytes under the nonce 4 zero bytes + ``counter``
 * (8 bytes, as in the header) into ``stream``: block 0, then the payload's from offset 64.
 * -1 for a length that ``stream`` cannot hold (more than one datagram's payload). */
static int keystream(Aead *aead, const unsigned char *counter, Py_ssize_t length)
{
    if (length < 0 || length > MAX_PAYLOAD)
        return -1;
    /* EVP's ChaCha20 IV: the 32-bit block counter (LE), then RFC 8439's 12-byte nonce. */
    unsigned char iv[16] = {0};
    int written;
    memcpy(iv + 8, counter, 8);
    int blocks = (int)(BLOCK + (length + BLOCK - 1) / BLOCK * BLOCK);
    return EVP_EncryptInit_ex(aead->chacha, NULL, NULL, NULL, iv)
               && EVP_EncryptUpdate(aead->chacha, stream, &written, zeros, blocks)
           ? 0 : -1;
}

/* 16 bytes at a time: GCC and Clang make this one SSE2 XOR per step
 * where a plain byte or word loop stays scalar at -O2. */
typedef uint64_t Lanes __attribute__((vector_size(16)));

static void xor_stream(unsigned char *out, const unsigned char *in, const unsigned char *key,
                       Py_ssize_t length)
{
    Py_ssize_t i = 0;
    for (; i + (Py_ssize_t)sizeof(Lanes) <= length; i += sizeof(Lanes)) {
        Lanes word, mask;
        memcpy(&word, in + i, sizeof word);
        memcpy(&mask, key + i, sizeof mask);
        word ^= mask;
        memcpy(out + i, &word, sizeof word);
    }
    for (; i < length; i++)
        out[i] = in[i] ^ key[i];
}

/* RFC 8439's tag over the associated data (``pieces`` of 16 bytes each, so none needs
 * padding) and the ciphertext, keyed from block 0 of ``stream``, which is wiped afterwards
 * (a one-time key, never left behind). */
static int tag(const unsigned char *const associated[], int pieces,
               const unsigned char *ciphertext, Py_ssize_t length, unsigned char *out)
{
    static const unsigned char padding[16] = {0};
    unsigned char lengths[16];
    size_t written;
    put_le64(lengths, (uint64_t)pieces * 16);
    put_le64(lengths + 8, (uint64_t)length);
    int ok = EVP_MAC_init(poly, stream, 32, NULL);
    for (int i = 0; ok && i < pieces; i++)
        ok = EVP_MAC_update(poly, associated[i], 16);
    ok = ok && EVP_MAC_update(poly, ciphertext, (size_t)length)
         && EVP_MAC_update(poly, padding, (16 - (size_t)length % 16) % 16)
         && EVP_MAC_update(poly, lengths, 16)
         && EVP_MAC_final(poly, out, &written, TAG_LEN);
    OPENSSL_cleanse(stream, 32);
    return ok ? 0 : -1;
}

void dp_write_header(unsigned char *out, unsigned kind, unsigned hint, uint32_t index,
                     uint64_t counter)
{
    out[0] = PROTOCOL_VERSION;
    out[1] = (unsigned char)kind;
    put_le16(out + 2, hint);
    put_le32(out + 4, index);
    put_le64(out + 8, counter);
}

/* The header (16 bytes, already at out), then the payload given in two pieces (the second
 * may be empty), sealed: out, of HEADER_LEN + the payload + TAG_LEN bytes, gets header,
 * ciphertext, tag. -1 with CryptoError set if OpenSSL fails or the payload is longer than a
 * datagram's. */
int dp_seal_into(Aead *aead, unsigned char *out, const unsigned char *first,
                 Py_ssize_t first_length, const unsigned char *second, Py_ssize_t second_length)
{
    Py_ssize_t length = first_length + second_length;
    unsigned char *ciphertext = out + HEADER_LEN;
    int failed = keystream(aead, out + 8, length);
    if (!failed) {
        xor_stream(ciphertext, first, stream + BLOCK, first_length);
        xor_stream(ciphertext + first_length, second, stream + BLOCK + first_length,
                   second_length);
        const unsigned char *header[] = {out};
        failed = tag(header, 1, ciphertext, length, ciphertext + length);
    }
    if (failed)
        PyErr_SetString(dp_crypto_error, "OpenSSL failed to seal (or a payload over 65503 bytes)");
    return failed;
}

/* Authenticate and decrypt data[16:] (``length`` bytes in all) with the header as associated
 * data into out (length - 32 bytes): 0, 1 if forged (out untouched), -1 with CryptoError set
 * if OpenSSL fails or the length is not a datagram's. */
int dp_open_into(Aead *aead, const unsigned char *data, Py_ssize_t length, unsigned char *out)
{
    Py_ssize_t body = length - HEADER_LEN - TAG_LEN;
    unsigned char expected[TAG_LEN];
    const unsigned char *header[] = {data};
    if (keystream(aead, data + 8, body) < 0
        || tag(header, 1, data + HEADER_LEN, body, expected) < 0) {
        PyErr_SetString(dp_crypto_error, "OpenSSL failed to open (or a datagram of an impossible length)");
        return -1;
    }
    if (CRYPTO_memcmp(expected, data + HEADER_LEN + body, TAG_LEN) != 0)
        return 1;
    xor_stream(out, data + HEADER_LEN, stream + BLOCK, body);
    return 0;
}


/* Thin relay frames (types 9 and 10, docs/PROTOCOL.md): header | address (5, encrypted) |
 * tag | a data datagram, in the clear. The data datagram is sealed end to end already, so
 * sealing it again for the root would buy nothing but a second pass of the cipher on each of
 * the three nodes. The tag covers the frame's header and, of the data datagram, its header,
 * its tag and its length: whoever changes a byte between them is caught by the end-to-end
 * tag at the receiver instead, and changes nothing else. ``length_piece`` is 16 bytes that
 * this fills with the length. */
#define THIN_PIECES 4
static void thin_associated(const unsigned char *header, const unsigned char *inner,
                            Py_ssize_t inner_length, unsigned char *length_piece,
                            const unsigned char *pieces[THIN_PIECES])
{
    put_le64(length_piece, (uint64_t)inner_length);
    memset(length_piece + 8, 0, 8);
    pieces[0] = header;
    pieces[1] = inner;
    pieces[2] = inner + inner_length - TAG_LEN;
    pieces[3] = length_piece;
}

/* The header (16 bytes, already at out), then the 5-byte ``address`` and the data datagram
 * ``inner`` as a thin frame: out gets THIN_OVERHEAD + inner_length bytes. -1 with ValueError
 * set if ``inner`` is no data datagram, CryptoError if OpenSSL fails. */
int dp_seal_thin(Aead *aead, unsigned char *out, const unsigned char *address,
                 const unsigned char *inner, Py_ssize_t inner_length)
{
    if (inner_length < HEADER_LEN + TAG_LEN || inner_length > MAX_PAYLOAD - ADDRESS_LEN
        || inner[1] != TYPE_DATA) {
        PyErr_SetString(PyExc_ValueError, "a thin relay frame carries a data datagram");
        return -1;
    }
    const unsigned char *associated[THIN_PIECES];
    unsigned char length_piece[16];
    thin_associated(out, inner, inner_length, length_piece, associated);
    unsigned char *sealed = out + HEADER_LEN;
    memcpy(sealed + ADDRESS_LEN + TAG_LEN, inner, (size_t)inner_length);
    if (keystream(aead, out + 8, ADDRESS_LEN) < 0) {
        PyErr_SetString(dp_crypto_error, "OpenSSL failed to seal");
        return -1;
    }
    xor_stream(sealed, address, stream + BLOCK, ADDRESS_LEN);
    if (tag(associated, THIN_PIECES, sealed, ADDRESS_LEN, sealed + ADDRESS_LEN) < 0) {
        PyErr_SetString(dp_crypto_error, "OpenSSL failed to seal");
        return -1;
    }
    return 0;
}

/* A thin frame of ``length`` bytes authenticated, and its address (decrypted) and data
 * datagram into out (length - 32 bytes): 0, 1 if forged or too short to be one (out
 * untouched), -1 with CryptoError set if OpenSSL fails. */
int dp_open_thin(Aead *aead, const unsigned char *data, Py_ssize_t length, unsigned char *out)
{
    const unsigned char *inner = data + THIN_OVERHEAD;
    Py_ssize_t inner_length = length - THIN_OVERHEAD;
    if (inner_length < HEADER_LEN + TAG_LEN || length > MAX_DATAGRAM)
        return 1;
    const unsigned char *associated[THIN_PIECES];
    unsigned char length_piece[16], expected[TAG_LEN];
    thin_associated(data, inner, inner_length, length_piece, associated);
    if (keystream(aead, data + 8, ADDRESS_LEN) < 0
        || tag(associated, THIN_PIECES, data + HEADER_LEN, ADDRESS_LEN, expected) < 0) {
        PyErr_SetString(dp_crypto_error, "OpenSSL failed to open");
        return -1;
    }
    if (CRYPTO_memcmp(expected, data + HEADER_LEN + ADDRESS_LEN, TAG_LEN) != 0)
        return 1;
    xor_stream(out, data + HEADER_LEN, stream + BLOCK, ADDRESS_LEN);
    memcpy(out + ADDRESS_LEN, inner, (size_t)inner_length);
    return 0;
}
