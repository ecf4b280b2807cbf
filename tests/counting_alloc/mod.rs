//! A counting global allocator for the memory-cost test binaries (each binary that declares
//! `mod counting_alloc;` gets its own): bytes allocated and not freed, per thread, so that a
//! test measures its own allocations whatever the harness and other tests do meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Bytes allocated and not freed by this thread: each test counts its own allocations
    /// only, whatever the test harness and the other tests do on their threads meanwhile.
    /// (No destructor and a const initializer: usable from inside the allocator.)
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

/// Bytes this thread has allocated and not freed.
pub fn live() -> isize {
    LIVE.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;
