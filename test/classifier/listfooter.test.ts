import { describe, expect, it } from "vitest";
import { listFooterStart, stripListFooter, stripSubjectTag } from "../../nodes/classifier/listfooter.js";

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

  it("listFooterStart is where stripListFooter cuts (the text's length when it keeps all)", () => {
    const body = "Real content here.\nMore words.\n";
    const texts = [
      body + "-- \nIrish Linux Users' Group: ilug@linux.ie\nhttp://www.linux.ie/mailman/listinfo/ilug for (un)subscription information.\n",
      body + "\n\nhttp://xent.com/mailman/listinfo/fork\n",
      "Hi,\nsee you.\n-- \nJohn\n",
      "",
    ];
    for (const t of texts) expect(listFooterStart(t)).toBe(stripListFooter(t).length);
    expect(listFooterStart(texts[0]!)).toBe(body.length);
    expect(listFooterStart(texts[2]!)).toBe(texts[2]!.length);
  });

  it("removes a leading [list] subject tag, keeping Re:", () => {
    expect(stripSubjectTag("[ILUG] Printer woes")).toBe("Printer woes");
    expect(stripSubjectTag("Re: [SAtalk] Re: rules")).toBe("Re: Re: rules");
    expect(stripSubjectTag("Save [50%] now")).toBe("Save [50%] now");
  });
});
