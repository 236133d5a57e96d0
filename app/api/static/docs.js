// /docs: Swagger UI over this server's /openapi.json (no external validator badge: it would call out).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({ url: root.dataset.specUrl, dom_id: "#swagger-ui", validatorUrl: null,
                                deepLinking: true, tryItOutEnabled: true });
});
