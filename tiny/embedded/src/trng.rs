//! The seed of the device's generator, from the STM32F4's true random number generator (RNG
//! peripheral, 48 MHz PLL48 clock assumed running). Not a generator itself: ChaCha20 is
//! seeded from it.

const RCC_AHB2ENR: *mut u32 = 0x4002_3834 as *mut u32;
const RNG_CR: *mut u32 = 0x5006_0800 as *mut u32;
const RNG_SR: *const u32 = 0x5006_0804 as *const u32;
const RNG_DR: *const u32 = 0x5006_0808 as *const u32;

/// 32 bytes from the hardware, or `None` if it reports a seed or clock error.
pub fn seed() -> Option<[u8; 32]> {
    // SAFETY: fixed, aligned register addresses of the part's RCC and RNG blocks.
    unsafe {
        RCC_AHB2ENR.write_volatile(RCC_AHB2ENR.read_volatile() | 1 << 6);
        RNG_CR.write_volatile(1 << 2);
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(4) {
            let mut spins = 0u32;
            loop {
                let sr = RNG_SR.read_volatile();
                if sr & 0b110 != 0 {
                    return None;
                }
                if sr & 1 != 0 {
                    break;
                }
                spins += 1;
                if spins > 100_000 {
                    return None;
                }
            }
            chunk.copy_from_slice(&RNG_DR.read_volatile().to_le_bytes());
        }
        Some(out)
    }
}
