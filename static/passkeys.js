// Passkeys (WebAuthn) for coop-idp's pages: no framework, no third party.
//
// Every passkey form is written by the server with the `hidden` attribute:
// without this script (or without WebAuthn in the browser) the page is the
// same as before, password and codes included. A form
// `<form data-passkey="get|create" data-options="/…/options">` is shown;
// on submit the script asks the server for the options (POST, with the
// form's CSRF token, and the address typed in `#<data-email-from>` when
// set), calls navigator.credentials, puts the answer (JSON) in the form's
// `credential` field and submits the form for real: the server answers
// with a page, as for any form.
//
// Passkey autofill: on the sign-in page, a hidden
// `<form data-passkey-autofill="/…/options">` asks for a challenge tied to
// no account as soon as the page is ready and hands it to the browser as a
// conditional request: the email field (`autocomplete="username webauthn"`)
// then lists the site's passkeys among its suggestions, and choosing one
// submits the form with the answer. The request waits silently otherwise;
// it is aborted when another form asks the browser itself (one request at
// a time).
(function () {
  'use strict';
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  function decode(text) {
    var b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function encode(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = decode(c.id);
      return copy;
    });
  }

  function creationOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = decode(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: decode(pk.user.id) });
    pk.excludeCredentials = withIds(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = decode(pk.challenge);
    pk.allowCredentials = withIds(pk.allowCredentials);
    return { publicKey: pk };
  }

  function extensions(credential) {
    try {
      return credential.getClientExtensionResults ? credential.getClientExtensionResults() : {};
    } catch (e) {
      return {};
    }
  }

  function registration(credential) {
    var r = credential.response;
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      extensions: extensions(credential),
      response: {
        attestationObject: encode(r.attestationObject),
        clientDataJSON: encode(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined
      }
    };
  }

  function assertion(credential) {
    var r = credential.response;
    return {
      id: credential.id,
      rawId: encode(credential.rawId),
      type: credential.type,
      extensions: extensions(credential),
      response: {
        authenticatorData: encode(r.authenticatorData),
        clientDataJSON: encode(r.clientDataJSON),
        signature: encode(r.signature),
        userHandle: r.userHandle ? encode(r.userHandle) : null
      }
    };
  }

  function say(form, key) {
    var box = form.querySelector('[data-passkey-message]');
    if (!box) return;
    box.textContent = form.getAttribute('data-' + key) || '';
    box.hidden = !box.textContent;
    if (!box.hidden) box.focus();
  }

  var autofill = null;

  function stopAutofill() {
    if (autofill) autofill.abort();
    autofill = null;
  }

  function startAutofill(form) {
    var available = PublicKeyCredential.isConditionalMediationAvailable;
    if (!window.AbortController || !available) return;
    var controller = new AbortController();
    autofill = controller;
    available
      .call(PublicKeyCredential)
      .then(function (yes) {
        if (!yes || controller.signal.aborted) return null;
        var body = new URLSearchParams();
        body.set('csrf', form.elements.csrf.value);
        return fetchOptions(form.getAttribute('data-passkey-autofill'), body).then(function (options) {
          if (!options.publicKey || controller.signal.aborted) return null;
          var request = requestOptions(options);
          request.mediation = 'conditional';
          request.signal = controller.signal;
          return navigator.credentials.get(request).then(assertion);
        });
      })
      .then(function (answer) {
        if (!answer) return;
        autofill = null;
        form.elements.credential.value = JSON.stringify(answer);
        HTMLFormElement.prototype.submit.call(form);
      })
      .catch(function () {
        // Nothing chosen, or another request took over: the page is as it was.
      });
  }

  // The ceremony's options, asked with the page's CSRF token in `body`.
  function fetchOptions(url, body) {
    return fetch(url, {
      method: 'POST',
      body: body,
      credentials: 'same-origin',
      headers: { Accept: 'application/json' }
    }).then(function (r) {
      if (!r.ok) throw new Error('options ' + r.status);
      return r.json();
    });
  }

  function start(form) {
    stopAutofill();
    var mode = form.getAttribute('data-passkey');
    var body = new URLSearchParams();
    body.set('csrf', form.elements.csrf.value);
    var emailFrom = form.getAttribute('data-email-from');
    if (emailFrom) {
      var field = document.getElementById(emailFrom);
      var email = field ? field.value.trim() : '';
      if (!email) {
        say(form, 'message-email');
        if (field) field.focus();
        return;
      }
      body.set('email', email);
      if (form.elements.email) form.elements.email.value = email;
    }
    say(form, '');
    fetchOptions(form.getAttribute('data-options'), body)
      .then(function (options) {
        if (!options.publicKey) {
          say(form, 'message-none');
          return null;
        }
        return mode === 'create'
          ? navigator.credentials.create(creationOptions(options)).then(registration)
          : navigator.credentials.get(requestOptions(options)).then(assertion);
      })
      .then(function (answer) {
        if (!answer) return;
        form.elements.credential.value = JSON.stringify(answer);
        HTMLFormElement.prototype.submit.call(form);
      })
      .catch(function () {
        say(form, 'message-failed');
      });
  }

  function ready() {
    var forms = document.querySelectorAll('form[data-passkey]');
    Array.prototype.forEach.call(forms, function (form) {
      form.hidden = false;
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        if (form.reportValidity && !form.reportValidity()) return;
        start(form);
      });
    });
    var hide = document.querySelectorAll('[data-passkey-fallback]');
    Array.prototype.forEach.call(hide, function (el) {
      el.hidden = true;
    });
    var auto = document.querySelector('form[data-passkey-autofill]');
    if (auto) startAutofill(auto);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', ready);
  else ready();
})();
