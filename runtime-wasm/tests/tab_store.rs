//! The npm package's `TabStore` (one log for every tab of an origin) keeps the store
//! contract: the core's conformance suite, in headless Chromium, through the JS store
//! bridge, committing from the tab that writes and from a tab that does not.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)]

use runtime_core::store::conformance;
use runtime_wasm::{JsStore, RuntimeStore};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/npm/tab-store.js")]
extern "C" {
    #[wasm_bindgen(js_name = TabStore)]
    type TabStore;
    #[wasm_bindgen(constructor, js_class = TabStore)]
    fn new(name: &str) -> TabStore;
    #[wasm_bindgen(method, getter, js_name = isWriter)]
    fn is_writer(this: &TabStore) -> bool;
}

/// A log nobody used before.
fn fresh_name() -> String {
    format!("conformance-{}", runtime_core::QueueId::random())
}

fn bridge(store: TabStore) -> JsStore {
    JsStore::new(store.unchecked_into::<RuntimeStore>())
}

#[wasm_bindgen_test]
async fn a_tab_store_keeps_the_store_contract_in_the_tab_that_writes() {
    conformance::run_all(|| bridge(TabStore::new(&fresh_name()))).await;
}

#[wasm_bindgen_test]
async fn a_tab_store_keeps_the_store_contract_in_a_tab_that_only_asks_the_writer() {
    conformance::run_all(|| {
        let name = fresh_name();
        // The first store of a name is elected writer and kept alive; the test commits and
        // reads through the second, which asks it over the channel, as another tab would.
        let writer = TabStore::new(&name);
        let asking = TabStore::new(&name);
        assert!(
            !asking.is_writer(),
            "the second store of a name does not write"
        );
        std::mem::forget(writer);
        bridge(asking)
    })
    .await;
}
