/* The demo shop: a tiny single-page app with a broken Pay button and a payment
   provider that declines every card, so friction is easy to produce on purpose. */
(function () {
  'use strict';
  var PRICE = 49;
  var cart = JSON.parse(sessionStorage.getItem('demo:cart') || '{"qty": 0}');
  var qty = 1;
  var $ = function (id) { return document.getElementById(id); };

  function money(n) { return '$' + n.toFixed(2); }
  function saveCart() {
    sessionStorage.setItem('demo:cart', JSON.stringify(cart));
    $('cart-count').textContent = cart.qty;
  }

  function render() {
    var here = location.pathname.replace(/\/+$/, '') || '/demo';
    [].forEach.call(document.querySelectorAll('[data-view]'), function (view) {
      view.hidden = view.getAttribute('data-view') !== here;
    });
    $('cart-count').textContent = cart.qty;
    $('cart-lines').innerHTML = cart.qty
      ? '<li>' + cart.qty + ' \u00d7 The Frictionless Kettle</li>' : '<li>Your cart is empty.</li>';
    $('cart-total').textContent = 'Total: ' + money(cart.qty * PRICE);
    $('checkout-total').textContent = money(Math.max(cart.qty, 1) * PRICE);
  }

  function go(path) {
    history.pushState({}, '', path);
    render();
  }

  document.addEventListener('click', function (ev) {
    var link = ev.target.closest('a[data-route]');
    if (link) { ev.preventDefault(); go(link.getAttribute('data-route')); }
  });
  window.addEventListener('popstate', render);

  $('qty-up').onclick = function () { qty = Math.min(qty + 1, 9); $('qty').textContent = qty; };
  $('qty-down').onclick = function () { qty = Math.max(qty - 1, 1); $('qty').textContent = qty; };
  $('add').onclick = function () {
    cart.qty += qty;
    saveCart();
    $('added').textContent = 'Added ' + qty + ' to your cart.';
  };
  $('to-checkout').onclick = function () { go('/demo/checkout'); };
  $('help').onclick = function () { frictionwatch.requestHelp('demo_header'); };

  // The bug: the Pay button waits for a payment form that was never set up, so a
  // click does nothing at all: no spinner, no error, no navigation.
  var paymentForm = null;
  $('pay').onclick = function () {
    if (!paymentForm) return;
    paymentForm.submit();
  };

  // The saved card always fails at the provider.
  $('pay-saved').onclick = function () {
    var button = $('pay-saved');
    frictionwatch.track('checkout_attempt', {step: 'payment'});
    button.disabled = true;
    $('pay-error').textContent = 'Paying\u2026';
    fetch('/demo/api/pay', {method: 'POST', body: '{"card": "saved"}'})
      .then(function (res) { return res.json().then(function (body) { return [res, body]; }); })
      .then(function (answer) {
        var code = answer[1].error || 'unknown';
        button.disabled = false;
        $('pay-error').textContent = 'Payment failed: your card was declined (' + code + ').';
        frictionwatch.track('checkout_failed', {reason: 'declined', code: code});
      }, function () {
        button.disabled = false;
        $('pay-error').textContent = 'Payment failed: no connection.';
        frictionwatch.track('checkout_failed', {reason: 'network'});
      });
  };

  render();
})();
