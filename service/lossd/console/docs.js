// Boots Swagger UI (/docs) or ReDoc (/redoc) on /openapi.json, with the API key that the
// console keeps in this tab (sessionStorage) when the server wants one: Swagger UI sends it with
// every request, "Try it out" included.
(function () {
  const key = sessionStorage.getItem("lossd-api-key");
  const auth = key ? { Authorization: `Bearer ${key}` } : {};
  const refused = "This lossd requires an API key: enter it in the console at / (in this tab), then come back.";
  const swagger = document.getElementById("swagger-ui");
  if (swagger) {
    window.ui = SwaggerUIBundle({
      url: "/openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout", deepLinking: true,
      showExtensions: true, showCommonExtensions: true,
      validatorUrl: null,  // no badge fetched from the validator's site
      requestInterceptor: (request) => { Object.assign(request.headers, auth); return request; },
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    });
    return;
  }
  const target = document.getElementById("redoc");
  fetch("/openapi.json", { headers: auth, cache: "no-store" })
    .then((response) => { if (!response.ok) throw response.status; return response.json(); })
    .then((spec) => Redoc.init(spec, {}, target))
    .catch((status) => {
      target.textContent = status === 401 ? refused : `/openapi.json could not be read (${status}).`;
    });
})();
