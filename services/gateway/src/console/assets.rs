//! The console's files, compiled into the binary.

/// A file of the console, compiled in.
pub(super) struct Asset {
    pub(super) path: &'static str,
    pub(super) content_type: &'static str,
    pub(super) body: &'static [u8],
}

pub(super) const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../console/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/app.js"),
    },
    Asset {
        path: "/console/core.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/core.js"),
    },
    Asset {
        path: "/console/portal.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/portal.js"),
    },
    Asset {
        path: "/console/reference.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/reference.js"),
    },
    Asset {
        path: "/console/ops.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/ops.js"),
    },
    Asset {
        path: "/console/executions.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../console/executions.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../console/app.css"),
    },
    Asset {
        path: "/favicon.ico",
        content_type: "image/svg+xml",
        body: include_bytes!("../../console/favicon.svg"),
    },
];
