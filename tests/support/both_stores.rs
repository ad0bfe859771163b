//! Running one scenario against both stores: once on a real `redis-server`, once on the
//! in-memory store, as two tests named `<scenario>::redis` and `<scenario>::memory`.
// Every test crate compiles the support module; only some of them use the macro.
#![allow(unused_macros, unused_imports)]

/// Runs each named scenario (an `async fn(StoreKind)` in the calling file) once on Redis and once
/// on the in-memory store, so a behaviour both stores promise is checked on both.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$scenario($crate::support::StoreKind::Redis).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$scenario($crate::support::StoreKind::Memory).await
            }
        }
    )*};
}

pub(crate) use on_both_stores;
