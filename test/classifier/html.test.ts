import { describe, expect, it } from "vitest";
import { decodeEntities, scanHtml } from "../../nodes/classifier/html.js";
import { baseDomain, parseLink, textUrls } from "../../nodes/classifier/links.js";

describe("scanHtml", () => {
  // A hang guard, not a speed goal: when every <head> searched the rest of the text again, 20,000 took 22.6 s
  // and this (three times the length, nine times the work) would take minutes, past the test's timeout.
  it("reads a text of 60,000 <head> tags without </head> in one pass; the title they share is taken once for them", () => {
    const s = scanHtml("<head>\n".repeat(60_000) + "<title>Only once</title>");
    expect(s.tags).toBe(60_002);
    // Once for the <head>s, once as text where it stands (no </head> ends the skipped part).
    expect(s.text.match(/Only once/g)).toHaveLength(2);
    expect(scanHtml("<head><title>A</title></head><p>x</p><head><title>B</title></head>").text.replace(/\s+/g, " ").trim()).toBe("A x B");
  }, 30_000);

  it("keeps visible text, drops script/style/comments, joins inline tags", () => {
    const s = scanHtml(
      '<html><head><title>Deal</title><style>p{}</style></head><body><script>var x="<p>no</p>";</script>' +
        '<!-- hidden --><p>V<b></b>iagra &amp; more&nbsp;now</p><div>next</div></body></html>',
    );
    expect(s.text.replace(/\s+/g, " ").trim()).toBe("Deal Viagra & more now next");
  });

  it("collects links, images and structure counts", () => {
    const s = scanHtml(
      '<a href="http://example.com/x">a</a><A HREF=\'https://b.example.org\'>b</A><img src="http://1.2.3.4/p.gif" alt="Buy">' +
        '<font size="1">tiny</font><table><tr><td>x</td></tr></table><form><input></form>',
    );
    expect(s.hrefs).toEqual(["http://example.com/x", "https://b.example.org"]);
    expect(s.imgSrcs).toEqual(["http://1.2.3.4/p.gif"]);
    expect(s).toMatchObject({ images: 1, fonts: 1, tables: 1, forms: 2, hidden: 1 });
    expect(s.text).toContain("Buy");
  });

  it("decodes numeric and named entities", () => {
    expect(decodeEntities("&#72;&#x69; &eacute;&copy; &bogus; &lt;")).toBe("Hi é© &bogus; <");
  });
});

describe("links", () => {
  it("parses hosts leniently", () => {
    expect(parseLink("http://www.Example.COM:8080/path")).toMatchObject({ host: "www.example.com", scheme: "http", port: true, ipHost: false });
    expect(parseLink("http://paypal.com@198.51.100.7/login")).toMatchObject({ host: "198.51.100.7", userInfo: true, ipHost: true });
    expect(parseLink("www.shop.example.net/x")).toMatchObject({ host: "www.shop.example.net", scheme: "http" });
    expect(parseLink("mailto:remove@list.example")).toMatchObject({ host: "list.example", scheme: "mailto" });
    expect(parseLink("page.html")).toMatchObject({ host: "", scheme: "" });
    expect(baseDomain("a.b.example.co")).toBe("example.co");
  });

  it("finds URLs in plain text", () => {
    expect(textUrls("see http://a.example/x, and www.b.example.", 10)).toEqual(["http://a.example/x,", "www.b.example."]);
  });
});
