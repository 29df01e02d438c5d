"""The one composition root: every process shape (`single`: `helios serve`; `gateway`;
`worker` and its session port) is `app.build_app` with some parts, served by `web.server`'s
one hardened launcher; `engine` builds the engine a process runs."""
