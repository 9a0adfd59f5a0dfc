//! `#[bilateral::service]`: a typed service from a trait.
//!
//! The attribute keeps the trait as written (it is what a server
//! implements) and generates, next to it, for a trait `Arith`:
//!
//! - `ArithServer<T>`, which registers every method of an `impl Arith` on a
//!   node: `node.serve(ArithServer::new(my_impl))`. Each method is the
//!   method `"Arith.<method>"` on the wire, its arguments a MessagePack array
//!   of its parameters in order, so a peer in another language calls it by
//!   that name;
//! - `ArithClient`, whose methods mirror the trait's with the target first:
//!   `m(peer, args…)` for one peer, `m_to(to, args…)` for any targets
//!   (`Responses`), `m_async` and `m_to_async` as futures, `cast_m(to, args…)`.
//!
//! An `async fn` method is served with `Node::register_async` (the `tokio`
//! feature; `serve` must then be called within a tokio runtime) and is
//! declared as `fn .. -> impl Future<Output = ..> + Send`, so that it can
//! run on a multi-threaded runtime; implementations may write `async fn`.
//!
//! A method returning `Result<T, E>` (with `E` other than `HandlerError`)
//! sends `E` as a typed error, and the client hands it back as the inner
//! `Err` of `Result<Result<T, E>, CallError>`. Client and server share the
//! trait's types, so a mismatch between them does not compile. See the
//! `bilateral` crate's documentation for an example.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, TraitItem, Type,
    parse_macro_input, spanned::Spanned,
};

/// Generates a typed server and client for a trait (see the crate docs).
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let span = Tokens::from(attr).span();
        return syn::Error::new(span, "#[service] takes no arguments")
            .to_compile_error()
            .into();
    }
    let item = parse_macro_input!(item as ItemTrait);
    match expand(&item) {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            let error = e.to_compile_error();
            quote!(#item #error).into()
        }
    }
}

/// One method of the service, as the generated code needs it.
struct Method {
    ident: Ident,
    /// The name on the wire: `Trait.method`.
    wire: String,
    /// Whether the server method takes a `&CallContext` first.
    takes_context: bool,
    args: Vec<(Ident, Type)>,
    /// The reply type `T` and, for `Result<T, E>`, the error type.
    reply: Type,
    error: Error,
    is_async: bool,
    docs: Vec<syn::Attribute>,
}

/// How a method's errors travel.
enum Error {
    /// It returns a plain value.
    None,
    /// It returns `Result<T, HandlerError>`: an untyped error, its message.
    Untyped,
    /// It returns `Result<T, E>`: `E` travels as a typed error.
    Typed(Box<Type>),
}

fn expand(item: &ItemTrait) -> syn::Result<Tokens> {
    let trait_ident = &item.ident;
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "a service trait cannot have generic parameters",
        ));
    }
    let methods = item
        .items
        .iter()
        .map(|i| method(trait_ident, i))
        .collect::<syn::Result<Vec<_>>>()?;
    let item = &with_send_futures(item);
    let vis = &item.vis;
    let server = format_ident!("{}Server", trait_ident);
    let client = format_ident!("{}Client", trait_ident);
    let registrations = methods.iter().map(registration);
    let client_methods = methods.iter().map(client_methods);
    let names = methods.iter().map(|m| &m.wire);
    let server_doc = format!(
        "Serves an implementation of [`{trait_ident}`]: `node.serve({server}::new(service))` \
         registers each of its methods as `\"{trait_ident}.<method>\"`."
    );
    let client_doc = format!(
        "Calls a [`{trait_ident}`] served by other nodes, typed: each method of the trait, \
         with the target first (`m(peer, ..)`, `m_to(to, ..)`, `m_async`, `m_to_async`, \
         `cast_m`)."
    );
    Ok(quote! {
        #item

        #[doc = #server_doc]
        #vis struct #server<T>(pub T);

        impl<T> #server<T> {
            /// Wraps `service` to be served.
            pub fn new(service: T) -> Self {
                #server(service)
            }
        }

        impl<T: #trait_ident + ::std::marker::Send + ::std::marker::Sync + 'static>
            ::bilateral::Service for #server<T>
        {
            fn methods(&self) -> &'static [&'static str] {
                &[#(#names),*]
            }

            fn register(self, node: &::bilateral::Node) -> ::std::result::Result<(), ::bilateral::Error> {
                let service = ::std::sync::Arc::new(self.0);
                #(#registrations)*
                ::std::result::Result::Ok(())
            }
        }

        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        #vis struct #client {
            node: ::bilateral::Node,
            timeout: ::std::time::Duration,
        }

        impl #client {
            /// A client calling through `node`, with its default call timeout.
            pub fn new(node: &::bilateral::Node) -> Self {
                #client {
                    node: node.clone(),
                    timeout: node.call_timeout(),
                }
            }

            /// The same client with another timeout for its calls.
            pub fn with_timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.timeout = timeout;
                self
            }

            /// The node it calls through.
            pub fn node(&self) -> &::bilateral::Node {
                &self.node
            }

            #(#client_methods)*
        }
    })
}

/// The trait with each `async fn` written as a `fn` returning
/// `impl Future + Send`: an async handler runs on a multi-threaded runtime,
/// so its future must be `Send`, and an `async fn` in a trait does not say
/// so. An implementation may still write `async fn`.
fn with_send_futures(item: &ItemTrait) -> ItemTrait {
    let mut item = item.clone();
    for i in &mut item.items {
        let TraitItem::Fn(f) = i else { continue };
        if f.sig.asyncness.take().is_none() {
            continue;
        }
        let output = match &f.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        f.sig.output = syn::parse_quote!(
            -> impl ::std::future::Future<Output = #output> + ::std::marker::Send
        );
    }
    item
}

fn method(trait_ident: &Ident, item: &TraitItem) -> syn::Result<Method> {
    let TraitItem::Fn(f) = item else {
        return Err(syn::Error::new(
            item.span(),
            "a service trait has only methods",
        ));
    };
    let sig = &f.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "service methods cannot be generic",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => {
            return Err(syn::Error::new(
                sig.span(),
                "a service method takes `&self` first",
            ));
        }
    }
    let mut takes_context = false;
    let mut args = Vec::new();
    for (i, input) in inputs.enumerate() {
        let FnArg::Typed(pt) = input else {
            return Err(syn::Error::new(input.span(), "unexpected receiver"));
        };
        if i == 0 && is_context(&pt.ty) {
            takes_context = true;
            continue;
        }
        let Pat::Ident(p) = &*pt.pat else {
            return Err(syn::Error::new(
                pt.pat.span(),
                "service method parameters must be plain names",
            ));
        };
        args.push((p.ident.clone(), (*pt.ty).clone()));
    }
    let (reply, error) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), Error::None),
        ReturnType::Type(_, ty) => match result_types(ty) {
            Some((t, e)) if last_ident_is(&e, "HandlerError") => (t, Error::Untyped),
            Some((t, e)) => (t, Error::Typed(Box::new(e))),
            None => ((**ty).clone(), Error::None),
        },
    };
    let docs = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    Ok(Method {
        ident: sig.ident.clone(),
        wire: format!("{trait_ident}.{}", sig.ident),
        takes_context,
        args,
        reply,
        error,
        is_async: sig.asyncness.is_some(),
        docs,
    })
}

/// Whether `ty` is `&CallContext` (by any path).
fn is_context(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if last_ident_is(&r.elem, "CallContext"))
}

fn last_ident_is(ty: &Type, name: &str) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == name))
}

/// `(T, E)` of a `Result<T, E>`.
fn result_types(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    let (t, e) = (types.next()?, types.next()?);
    types.next().is_none().then_some((t, e))
}

/// The arguments as one tuple value and its type.
fn args_tuple(m: &Method) -> (Tokens, Tokens) {
    let names = m.args.iter().map(|(n, _)| n);
    let types = m.args.iter().map(|(_, t)| t);
    (quote!((#(#names,)*)), quote!((#(#types,)*)))
}

fn registration(m: &Method) -> Tokens {
    let (ident, wire) = (&m.ident, &m.wire);
    let (tuple, tuple_type) = args_tuple(m);
    let reply = &m.reply;
    let names: Vec<_> = m.args.iter().map(|(n, _)| n).collect();
    let ctx_arg = if m.is_async {
        quote!(&ctx)
    } else {
        quote!(ctx)
    };
    let awaited = if m.is_async { quote!(.await) } else { quote!() };
    let call = if m.takes_context {
        quote!(service.#ident(#ctx_arg, #(#names),*)#awaited)
    } else {
        quote!(service.#ident(#(#names),*)#awaited)
    };
    let body = match &m.error {
        Error::None => quote!(::std::result::Result::Ok(#call)),
        Error::Untyped => call,
        Error::Typed(_) => {
            quote!(#call.map_err(|e| ::bilateral::HandlerError::typed(&e)))
        }
    };
    let ctx = Ident::new(
        if m.takes_context { "ctx" } else { "_ctx" },
        Span::call_site(),
    );
    if m.is_async {
        return quote! {
            {
                let service = ::std::sync::Arc::clone(&service);
                node.register_async(
                    #wire,
                    move |#ctx: ::bilateral::CallContext, #tuple: #tuple_type| {
                        let service = ::std::sync::Arc::clone(&service);
                        async move {
                            let result: ::std::result::Result<#reply, ::bilateral::HandlerError> =
                                { #body };
                            result
                        }
                    },
                )?;
            }
        };
    }
    quote! {
        {
            let service = ::std::sync::Arc::clone(&service);
            node.register(
                #wire,
                move |#ctx: &::bilateral::CallContext, #tuple: #tuple_type|
                    -> ::std::result::Result<#reply, ::bilateral::HandlerError> { #body },
            )?;
        }
    }
}

fn client_methods(m: &Method) -> Tokens {
    let (ident, wire, reply) = (&m.ident, &m.wire, &m.reply);
    let (tuple, _) = args_tuple(m);
    let params = m.args.iter().map(|(n, t)| quote!(#n: #t));
    let params: Vec<_> = params.collect();
    let docs = &m.docs;
    let to = format_ident!("{}_to", ident);
    let one_async = format_ident!("{}_async", ident);
    let to_async = format_ident!("{}_to_async", ident);
    let cast = format_ident!("cast_{}", ident);
    // What one peer's result is, how a raw result becomes it, and the
    // futures that do it.
    let (out, one, many, one_future, many_future, wrap) = match &m.error {
        Error::Typed(e) => (
            quote!(::std::result::Result<#reply, #e>),
            quote!(::bilateral::__private::typed_one::<#reply, #e>),
            quote!(::bilateral::__private::typed_many::<#reply, #e>),
            quote!(::bilateral::__private::Typed<::bilateral::CallOneFuture<#reply>, #e>),
            quote!(::bilateral::__private::Typed<::bilateral::CallFuture<#reply>, #e>),
            quote!(::bilateral::__private::Typed::new),
        ),
        Error::None | Error::Untyped => (
            quote!(#reply),
            quote!(::std::convert::identity),
            quote!(::std::convert::identity),
            quote!(::bilateral::CallOneFuture<#reply>),
            quote!(::bilateral::CallFuture<#reply>),
            quote!(::std::convert::identity),
        ),
    };
    let one_doc = format!("Calls `{wire}` on one peer.");
    let to_doc = format!("Calls `{wire}` on every peer of `to`: one entry per target.");
    let one_async_doc = format!("Calls `{wire}` on one peer, as a future.");
    let to_async_doc = format!("Calls `{wire}` on every peer of `to`, as a future.");
    let cast_doc = format!("Casts `{wire}` to every peer of `to` in session; says to how many.");
    quote! {
        #(#docs)*
        #[doc = ""]
        #[doc = #one_doc]
        pub fn #ident(&self, peer: &str, #(#params),*)
            -> ::std::result::Result<#out, ::bilateral::CallError>
        {
            #one(self.node.call_one::<_, #reply>(peer, #wire, &#tuple, self.timeout))
        }

        #[doc = #to_doc]
        pub fn #to(&self, to: impl ::std::convert::Into<::bilateral::To>, #(#params),*)
            -> ::std::result::Result<::bilateral::Responses<#out>, ::bilateral::Error>
        {
            self.node
                .call::<_, #reply>(to, #wire, &#tuple, self.timeout)
                .map(#many)
        }

        #[doc = #one_async_doc]
        pub fn #one_async(&self, peer: &str, #(#params),*) -> #one_future {
            #wrap(self.node.call_one_async::<_, #reply>(peer, #wire, &#tuple, self.timeout))
        }

        #[doc = #to_async_doc]
        pub fn #to_async(&self, to: impl ::std::convert::Into<::bilateral::To>, #(#params),*)
            -> #many_future
        {
            #wrap(self.node.call_async::<_, #reply>(to, #wire, &#tuple, self.timeout))
        }

        #[doc = #cast_doc]
        pub fn #cast(&self, to: impl ::std::convert::Into<::bilateral::To>, #(#params),*)
            -> ::std::result::Result<usize, ::bilateral::Error>
        {
            self.node.cast(to, #wire, &#tuple)
        }
    }
}
