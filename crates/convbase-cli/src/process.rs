//! Process-wide settings for the binaries that train: the floating-point environment and
//! the allocator's habits. Call them at the start of `main`, before any thread exists.

/// Flushes subnormal floats to zero on this thread and on every thread it starts later
/// (threads inherit the floating-point control register): results below 1.2e-38 become 0,
/// and subnormal inputs read as 0.
///
/// Why: RMSprop's and Adam's second moments decay geometrically (v = rho*v) for the many
/// weights whose gradient is zero (dead ReLU units, features that are zero after the conv
/// base's ReLU), and reach the subnormal range after a few hundred steps, where every
/// operation on them costs a hundred times more: epochs got twice as slow as training went
/// on. TensorFlow and XLA (the backends of the Keras reference) run their CPU kernels with
/// the same flags, so this also matches the reference's arithmetic.
///
/// Call it at the start of `main`, before any thread pool exists.
pub fn flush_denormals_to_zero() {
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR bit 15: flush to zero (FTZ); bit 6: denormals are zero (DAZ).
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write the SSE control register only; setting
        // FTZ and DAZ changes results below the normal range, nothing else.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags));
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // FPCR bit 24: flush to zero.
        // SAFETY: as above, for the AArch64 floating-point control register.
        unsafe {
            let mut fpcr: u64;
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
            fpcr |= 1 << 24;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
    }
}

/// Keeps the memory freed by a training step for the next one: raises glibc's thresholds for
/// returning memory to the system (mmap of blocks up to 32 MB instead of about 128 KB and up,
/// trimming of the heap past 1 GB). No-op elsewhere. Process-wide; call at the start of `main`.
///
/// Why: every step frees and allocates the same tensors again (candle's gradients and
/// activations, a few MB each), and with glibc's defaults each of them came back as fresh
/// pages from the kernel, zeroed on first touch: page faults took about 8% of a block5 step.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes the allocator's tuning parameters; both values are
        // within glibc's documented ranges (the mmap threshold at most 32 MB on 64-bit).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subnormal_results_become_zero_on_this_thread_and_on_threads_it_starts() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        std::thread::spawn(move || {
            assert!(
                (tiny * half).is_subnormal(),
                "default environment keeps subnormals"
            );
            super::flush_denormals_to_zero();
            assert_eq!(tiny * half, 0.0);
            let inherited = std::thread::spawn(move || tiny * half).join().unwrap();
            if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
                assert_eq!(inherited, 0.0, "a thread started later inherits the flags");
            }
        })
        .join()
        .unwrap();
    }
}
