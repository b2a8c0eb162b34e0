import { describe, expect, it } from "vitest";
import { listFooterStart, stripSubjectTag } from "../../nodes/classifier/listfooter.js";

/** The text without its list footer, as the feature extractor reads it (up to listFooterStart). */
const stripListFooter = (text: string): string => text.slice(0, listFooterStart(text));

describe("list artefacts", () => {
  it("cuts Mailman, ILUG-style and SourceForge footers", () => {
    const body = "Real content here.\nMore words.\n";
    expect(
      stripListFooter(body + "\n_______________________________________________\nSpamassassin-talk mailing list\nSpamassassin-talk@lists.sourceforge.net\nhttps://lists.sourceforge.net/lists/listinfo/spamassassin-talk\n"),
    ).toBe(body + "\n");
    expect(
      stripListFooter(body + "-- \nIrish Linux Users' Group: ilug@linux.ie\nhttp://www.linux.ie/mailman/listinfo/ilug for (un)subscription information.\nList maintainer: listmaster@linux.ie\n"),
    ).toBe(body);
    expect(stripListFooter(body + "\n\nhttp://xent.com/mailman/listinfo/fork\n")).toBe(body + "\n");
  });

  it("keeps text without a list footer, including a sender's own unsubscribe footer", () => {
    const own = "Offer inside.\n----------------------------------\nTo unsubscribe click http://shop.example/unsub\n";
    expect(stripListFooter(own)).toBe(own);
    expect(stripListFooter("")).toBe("");
    const sig = "Hi,\nsee you.\n-- \nJohn\n";
    expect(stripListFooter(sig)).toBe(sig);
  });

  it("listFooterStart is where a list footer begins (the text's length when there is none)", () => {
    const body = "Real content here.\nMore words.\n";
    const texts = [
      body + "-- \nIrish Linux Users' Group: ilug@linux.ie\nhttp://www.linux.ie/mailman/listinfo/ilug for (un)subscription information.\n",
      body + "\n\nhttp://xent.com/mailman/listinfo/fork\n",
      "Hi,\nsee you.\n-- \nJohn\n",
      "",
    ];
    // Pinned positions (the cuts above are built on listFooterStart, so comparing the two would prove nothing).
    expect(texts.map(listFooterStart)).toEqual([body.length, body.length + 1, texts[2]!.length, 0]);
  });

  it("removes a leading [list] subject tag, keeping Re:", () => {
    expect(stripSubjectTag("[ILUG] Printer woes")).toBe("Printer woes");
    expect(stripSubjectTag("Re: [SAtalk] Re: rules")).toBe("Re: Re: rules");
    expect(stripSubjectTag("Save [50%] now")).toBe("Save [50%] now");
  });
});
