//! Arbitrary text as an updater-script (parsed, then run against a host
//! that answers every call) and as the target-files text formats
//! (build.prop/misc_info, filesystem_config, recovery.fstab v1 and v2):
//! accepted or refused with an error, never a panic or a stack overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_android::edify::{self, Host, Value};

struct Yes(usize);
impl Host for Yes {
    fn call(&mut self, _name: &str, args: Vec<Value>) -> ota_android::Result<Value> {
        self.0 += 1;
        Ok(args.into_iter().next().unwrap_or_else(Value::t))
    }
    fn stdout(&mut self, _text: &str) {}
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = edify::parse(text) {
        let _ = p.run(&mut Yes(0));
    }
    let _ = ota_android::props::Props::parse(text, "f");
    let _ = ota_android::fs_config::FsConfig::parse(text, "f");
    let _ = ota_android::fstab::Fstab::parse(text, 1, "f");
    let _ = ota_android::fstab::Fstab::parse(text, 2, "f");
});
