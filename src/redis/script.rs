//! One Rust struct per Lua script, mirroring the script's header.
//!
//! Every script file starts with a header naming its `KEYS[i]` and
//! `ARGV[i]`. [`lua_script!`] declares a struct whose fields are those keys
//! and arguments in the same order, so a call site names each value
//! (`ci_version: ...`) instead of pushing fourteen positional arguments by
//! hand, and [`ScriptShape::check`] (run by each store's tests) fails if the
//! header and the struct disagree on how many there are.

/// Declares the struct of one Lua script; see the module docs.
///
/// ```ignore
/// lua_script! {
///     /// `lua/respond.lua`: records an answer on R.
///     pub struct Respond<'a>(include_str!("lua/respond.lua")) {
///         keys { answer: String, responses: &'a str }
///         args { request_id: &'a str, now_ms: u64 }
///     }
/// }
/// let reply: Vec<String> = Respond { .. }.invoke(&mut conn).await?;
/// ```
///
/// `keys` and `args` may each end with `..name: Type` for a variadic tail
/// (any `IntoIterator` of redis arguments), pushed after the fixed ones.
macro_rules! lua_script {
    (
        $(#[$doc:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? ($source:expr) {
            keys { $($key:ident : $key_ty:ty),* $(, ..$krest:ident : $krest_ty:ty)? $(,)? }
            args { $($arg:ident : $arg_ty:ty),* $(, ..$rest:ident : $rest_ty:ty)? $(,)? }
        }
    ) => {
        $(#[$doc])*
        #[allow(missing_docs)]
        $vis struct $name $(<$lt>)? {
            $(pub $key: $key_ty,)*
            $(pub $krest: $krest_ty,)?
            $(pub $arg: $arg_ty,)*
            $(pub $rest: $rest_ty,)?
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// The script's shape, for the header check.
            #[allow(dead_code)]
            pub const SHAPE: $crate::redis::script::ScriptShape = $crate::redis::script::ScriptShape {
                name: stringify!($name),
                source: $source,
                keys: &[$(stringify!($key)),*],
                args: &[$(stringify!($arg)),*],
                variadic_keys: $crate::redis::script::lua_script!(@variadic $($krest)?),
                variadic: $crate::redis::script::lua_script!(@variadic $($rest)?),
            };

            fn script() -> &'static ::redis::Script {
                static SCRIPT: ::std::sync::LazyLock<::redis::Script> =
                    ::std::sync::LazyLock::new(|| ::redis::Script::new($source));
                &SCRIPT
            }

            /// Runs the script (EVALSHA, loading it on NOSCRIPT).
            #[allow(dead_code)] // a script run only in pipelines (add_to)
            pub async fn invoke<T: ::redis::FromRedisValue>(
                &self,
                conn: &mut (impl ::redis::aio::ConnectionLike + Send),
            ) -> ::redis::RedisResult<T> {
                let mut invocation = Self::script().prepare_invoke();
                $(invocation.key(&self.$key);)*
                $(for key in &self.$krest { invocation.key(key); })?
                $(invocation.arg(&self.$arg);)*
                $(for value in &self.$rest { invocation.arg(value); })?
                invocation.invoke_async(conn).await
            }

            /// Adds `SCRIPT LOAD` of this script to `pipe` (its reply
            /// ignored), for [`query_scripts`](crate::redis::script::query_scripts).
            #[allow(dead_code)]
            pub fn load_into(pipe: &mut ::redis::Pipeline) {
                pipe.cmd("SCRIPT").arg("LOAD").arg($source).ignore();
            }

            /// Adds this call to `pipe` as one EVALSHA: many calls then
            /// cost one round trip, each still atomic on its own, run in
            /// order.
            #[allow(dead_code)]
            pub fn add_to(&self, pipe: &mut ::redis::Pipeline) {
                let mut keys = 0usize;
                $(let _ = stringify!($key); keys += 1;)*
                $(keys += self.$krest.len();)?
                pipe.cmd("EVALSHA").arg(Self::script().get_hash()).arg(keys);
                $(pipe.arg(&self.$key);)*
                $(for key in &self.$krest { pipe.arg(key); })?
                $(pipe.arg(&self.$arg);)*
                $(for value in &self.$rest { pipe.arg(value); })?
            }
        }
    };
    (@variadic) => { false };
    (@variadic $rest:ident) => { true };
}

pub(crate) use lua_script;

/// Runs `pipe`, a pipeline of script calls ([`lua_script!`]'s `add_to`),
/// each reply in place, errors too (`ignore_errors`). If Redis has lost a
/// script (a restart, SCRIPT FLUSH), `load` adds the SCRIPT LOADs and the
/// pipeline runs once more: sending the sources with every pipeline would
/// cost kilobytes and a SHA1 of each per call, for a case this rare. Only
/// for scripts that do nothing the second time (ours check a cursor or a
/// status first): calls before the one that met NOSCRIPT did run.
pub async fn query_scripts(
    conn: &mut (impl redis::aio::ConnectionLike + Send),
    pipe: &redis::Pipeline,
    load: impl Fn(&mut redis::Pipeline),
) -> redis::RedisResult<Vec<redis::Value>> {
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let lost = replies.iter().any(|reply| {
        matches!(reply, redis::Value::ServerError(e)
            if e.kind() == Some(redis::ServerErrorKind::NoScript))
    });
    if !lost {
        return Ok(replies);
    }
    let mut loading = redis::pipe();
    load(&mut loading);
    loading.query_async::<()>(conn).await?;
    pipe.query_async(conn).await
}

/// What a script's struct says about its KEYS and ARGV.
#[derive(Debug, Clone, Copy)]
pub struct ScriptShape {
    /// The struct's name.
    pub name: &'static str,
    /// The script's source.
    pub source: &'static str,
    /// Names of its KEYS, in order.
    pub keys: &'static [&'static str],
    /// Names of its fixed ARGV, in order.
    pub args: &'static [&'static str],
    /// True if KEYS ends with a variadic tail (`KEYS[n..]` in the header).
    pub variadic_keys: bool,
    /// True if ARGV ends with a variadic tail (`ARGV[n..]` in the header).
    pub variadic: bool,
}

impl ScriptShape {
    /// Checks the header's `KEYS[i]` / `ARGV[i]` numbering against the
    /// struct: as many keys and arguments, and a variadic tail
    /// (`ARGV[n..]`) exactly when the struct has one. Panics with what
    /// differs (for tests).
    pub fn check(&self) {
        // Every comment line counts: a script may begin with a shared
        // fragment (whose comments never name KEYS[n] or ARGV[n]).
        let header = self
            .source
            .lines()
            .filter(|l| l.trim_start().starts_with("--"));
        let (mut keys, mut args, mut key_tail, mut tail) = (0, 0, None, None);
        for line in header {
            for (marker, max, rest) in [
                ("KEYS[", &mut keys, &mut key_tail),
                ("ARGV[", &mut args, &mut tail),
            ] {
                for part in line.split(marker).skip(1) {
                    let number: String = part.chars().take_while(char::is_ascii_digit).collect();
                    let Ok(n) = number.parse::<usize>() else {
                        continue;
                    };
                    if part[number.len()..].starts_with("..") {
                        *rest = Some(n);
                    } else {
                        *max = (*max).max(n);
                    }
                }
            }
        }
        assert_eq!(
            keys,
            self.keys.len(),
            "{}: KEYS in header vs struct",
            self.name
        );
        assert_eq!(
            args,
            self.args.len(),
            "{}: ARGV in header vs struct",
            self.name
        );
        for (tail, variadic, fixed, what) in [
            (key_tail, self.variadic_keys, keys, "KEYS"),
            (tail, self.variadic, args, "ARGV"),
        ] {
            assert_eq!(
                tail.is_some(),
                variadic,
                "{}: variadic {what} tail in header vs struct",
                self.name
            );
            if let Some(start) = tail {
                assert_eq!(
                    start,
                    fixed + 1,
                    "{}: the {what} tail starts after the fixed ones",
                    self.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)] // only its shape is checked here
    mod sample {
        lua_script! {
        /// A test script.
        pub struct Sample<'a>("-- KEYS[1] a   KEYS[2] b\n-- ARGV[1] x\n-- ARGV[2..] rest\nreturn 1") {
            keys { a: &'a str, b: String }
            args { x: u64, ..rest: Vec<String> }
        }
        }
    }

    #[test]
    fn a_header_that_matches_passes() {
        sample::Sample::SHAPE.check();
    }

    #[test]
    #[should_panic(expected = "ARGV in header vs struct")]
    fn a_header_with_another_argument_count_fails() {
        ScriptShape {
            name: "bad",
            source: "-- KEYS[1] a\n-- ARGV[1] x   ARGV[2] y\nreturn 1",
            keys: &["a"],
            args: &["x"],
            variadic_keys: false,
            variadic: false,
        }
        .check();
    }
}
