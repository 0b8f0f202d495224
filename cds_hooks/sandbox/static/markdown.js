/* Safe Markdown for CDS Hooks card `detail`.
 *
 * Only the subset the cards use: paragraphs (line breaks kept), ATX headings,
 * bullet and numbered lists, **bold**, [links](url) and backslash
 * escapes. The result is built from DOM nodes whose text is set with text
 * nodes: HTML in the card text is never parsed, so it shows literally.
 * Links are kept only for http: and https: URLs.
 */
(function () {
  "use strict";

  var PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

  function isEscapable(ch) {
    return ch !== undefined && PUNCTUATION.indexOf(ch) !== -1;
  }

  function safeUrl(raw) {
    var url;
    try {
      url = new URL(String(raw).trim());
    } catch (e) {
      return null;
    }
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  }

  // Index of the next unescaped `marker` at or after `from`, or -1.
  function findUnescaped(text, from, marker) {
    for (var j = from; j < text.length; j++) {
      if (text[j] === "\\" && isEscapable(text[j + 1])) {
        j++;
      } else if (text.substr(j, marker.length) === marker) {
        return j;
      }
    }
    return -1;
  }

  // [label](url) starting at `start`: {label, url, end} or null.
  function parseLink(text, start) {
    var close = findUnescaped(text, start + 1, "]");
    if (close < 0 || text[close + 1] !== "(") return null;
    var label = text.slice(start + 1, close);
    if (findUnescaped(label, 0, "[") >= 0) return null;
    var depth = 0;
    for (var j = close + 2; j < text.length; j++) {
      var ch = text[j];
      if (/\s/.test(ch)) return null;
      if (ch === "(") depth++;
      if (ch === ")") {
        if (depth === 0) return { label: label, url: text.slice(close + 2, j), end: j + 1 };
        depth--;
      }
    }
    return null;
  }

  function inline(parent, text, allowLinks) {
    var buffer = "";
    function flush() {
      if (buffer) parent.appendChild(document.createTextNode(buffer));
      buffer = "";
    }
    var i = 0;
    while (i < text.length) {
      var ch = text[i];
      if (ch === "\\" && isEscapable(text[i + 1])) {
        buffer += text[i + 1];
        i += 2;
        continue;
      }
      if (ch === "*" && text[i + 1] === "*") {
        var end = findUnescaped(text, i + 2, "**");
        if (end > i + 2) {
          flush();
          var strong = document.createElement("strong");
          inline(strong, text.slice(i + 2, end), allowLinks);
          parent.appendChild(strong);
          i = end + 2;
          continue;
        }
      }
      if (ch === "[" && allowLinks) {
        var link = parseLink(text, i);
        var href = link && safeUrl(link.url);
        if (href) {
          flush();
          var a = document.createElement("a");
          a.href = href;
          a.rel = "noopener noreferrer";
          a.target = "_blank";
          inline(a, link.label, false);
          parent.appendChild(a);
          i = link.end;
          continue;
        }
        // Any other link (javascript:, data:, relative...) stays literal text.
      }
      buffer += ch;
      i += 1;
    }
    flush();
  }

  function render(markdown) {
    var fragment = document.createDocumentFragment();
    var lines = String(markdown === undefined || markdown === null ? "" : markdown)
      .replace(/\r\n?/g, "\n")
      .split("\n");
    var paragraph = null;
    var list = null;
    var listType = null;
    var item = null;

    function closeBlocks() {
      paragraph = null;
      list = null;
      listType = null;
      item = null;
    }

    lines.forEach(function (line) {
      if (/^\s*$/.test(line)) {
        closeBlocks();
        return;
      }
      var heading = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
      if (heading) {
        closeBlocks();
        // Card headings sit under the card's own h3.
        var h = document.createElement("h" + Math.min(heading[1].length + 3, 6));
        inline(h, heading[2], true);
        fragment.appendChild(h);
        return;
      }
      var bullet = /^ {0,3}[-*+]\s+(.*)$/.exec(line);
      var numbered = bullet ? null : /^ {0,3}\d{1,9}[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        var type = bullet ? "ul" : "ol";
        if (!list || listType !== type) {
          paragraph = null;
          list = document.createElement(type);
          listType = type;
          fragment.appendChild(list);
        }
        item = document.createElement("li");
        inline(item, (bullet || numbered)[1], true);
        list.appendChild(item);
        return;
      }
      if (item && /^\s{2,}\S/.test(line)) {
        // An indented line continues the list item.
        item.appendChild(document.createTextNode(" "));
        inline(item, line.trim(), true);
        return;
      }
      list = null;
      listType = null;
      item = null;
      if (paragraph) {
        paragraph.appendChild(document.createElement("br"));
      } else {
        paragraph = document.createElement("p");
        fragment.appendChild(paragraph);
      }
      inline(paragraph, line.trim(), true);
    });
    return fragment;
  }

  window.SafeMarkdown = { render: render, safeUrl: safeUrl };
})();
