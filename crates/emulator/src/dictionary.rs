//! The dictionary builder behind `gbdfl bench dict`: benchmark tooling,
//! never in a production build (it needs zstd's `zdict_builder`).

/// Makes a zstd dictionary: `content`, unchanged, with the entropy tables
/// zstd computes (at `level`) from compressing `samples` with it, and the
/// id `id`. Deterministic: the store's `zstd-dict-v2.bin` is this of the v1
/// content and [`crate::dictionary_samples`] (`gbdfl bench dict`; an ignored test
/// of the CLI checks the recipe, the store pins the file by its SHA-256).
pub fn dictionary(
    content: &[u8],
    level: i32,
    id: u32,
    samples: &[Vec<u8>],
) -> Result<Vec<u8>, String> {
    use zstd::zstd_safe::zstd_sys as sys;
    let flat = samples.concat();
    let sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
    let count = u32::try_from(sizes.len()).map_err(|_| "too many samples".to_owned())?;
    // Room for the content and the tables (a few hundred bytes), so that
    // no byte of the content is cut.
    let mut out = vec![0u8; content.len() + (16 << 10)];
    let params = sys::ZDICT_params_t {
        compressionLevel: level,
        notificationLevel: 0,
        dictID: id,
    };
    // SAFETY: each pointer and length is that of a live buffer: `out` is
    // written for at most `out.len()` bytes, the content, the samples and
    // their sizes are only read, and none of them overlap.
    let n = unsafe {
        sys::ZDICT_finalizeDictionary(
            out.as_mut_ptr().cast(),
            out.len(),
            content.as_ptr().cast(),
            content.len(),
            flat.as_ptr().cast(),
            sizes.as_ptr(),
            count,
            params,
        )
    };
    // SAFETY: ZDICT_isError takes any value and only compares it.
    if unsafe { sys::ZDICT_isError(n) } != 0 {
        // SAFETY: ZDICT_getErrorName takes any value and returns a static,
        // NUL-terminated C string.
        let why = unsafe { std::ffi::CStr::from_ptr(sys::ZDICT_getErrorName(n)) };
        return Err(why.to_string_lossy().into_owned());
    }
    out.truncate(n);
    Ok(out)
}
