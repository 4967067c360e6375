// Catalog search words: split at what is not a letter, mark or number, and
// case-folded in every script, so that a query finds a name whatever the case
// it was typed in.

#include <gtest/gtest.h>

#include "protocols/search_words.hpp"

using namespace shop;
using words = std::vector<std::string>;

TEST(SearchWords, test_ascii_names_split_at_what_is_not_a_letter_or_digit) {
  EXPECT_EQ(search_words("Blue Shirt-XL, size 42!"), (words{"blue", "shirt", "xl", "size", "42"}));
  EXPECT_EQ(search_words("men's_tee"), (words{"men", "s", "tee"}));
  EXPECT_EQ(search_words(""), words{});
  EXPECT_EQ(search_words(" -- "), words{});
}

TEST(SearchWords, test_every_case_of_a_word_gives_the_same_word) {
  EXPECT_EQ(search_words("CAFÉ CRÈME"), search_words("café crème"));
  EXPECT_EQ(search_words("Café Crème"), (words{"café", "crème"}));
  EXPECT_EQ(search_words("ÜNÏCÖDÉ"), (words{"ünïcödé"}));
  EXPECT_EQ(search_words("ŁÓDŹ"), (words{"łódź"}));
  EXPECT_EQ(search_words("МОСКВА"), (words{"москва"}));
  EXPECT_EQ(search_words("ΣΟΦΊΑ"), (words{"σοφία"}));
  // A final sigma folds as every sigma does.
  EXPECT_EQ(search_words("ΟΔΟΣ"), search_words("οδος"));
  EXPECT_EQ(search_words("ＡＢＣ"), (words{"ａｂｃ"})); // fullwidth
  EXPECT_EQ(search_words("ԱՐԱՐԱՏ"), (words{"արարատ"}));
  // One code point to one: capital sharp s is sharp s, not "ss".
  EXPECT_EQ(search_words("STRAẞE"), (words{"straße"}));
  // Capital I with a dot, which Unicode folds to two code points, is i.
  EXPECT_EQ(search_words("İSTANBUL"), (words{"istanbul"}));
}

TEST(SearchWords, test_the_folds_of_single_code_points) {
  EXPECT_EQ(fold_case(U'A'), U'a');
  EXPECT_EQ(fold_case(U'z'), U'z');
  EXPECT_EQ(fold_case(U'Ā'), U'ā');     // the upper/lower pairs of Latin Extended-A
  EXPECT_EQ(fold_case(U'ā'), U'ā');
  EXPECT_EQ(fold_case(U'\u212A'), U'k'); // KELVIN SIGN
  EXPECT_EQ(fold_case(U'ſ'), U's');      // long s
  EXPECT_EQ(fold_case(U'µ'), U'μ');      // micro sign to Greek mu
  EXPECT_EQ(fold_case(U'\u1E9E'), U'ß');
  EXPECT_EQ(fold_case(U'\U00010400'), U'\U00010428'); // Deseret, past the BMP
  EXPECT_EQ(fold_case(U'中'), U'中');
  EXPECT_EQ(fold_case(U'7'), U'7');
}

TEST(SearchWords, test_spaces_dashes_and_punctuation_of_every_script_split_words) {
  EXPECT_EQ(search_words("Café\u00A0Crème"), (words{"café", "crème"}));      // no-break space
  EXPECT_EQ(search_words("Wi\u2014Fi"), (words{"wi", "fi"}));               // em dash
  EXPECT_EQ(search_words("日本語\u3000製品"), (words{"日本語", "製品"}));     // ideographic space
  EXPECT_EQ(search_words("「茶」、緑"), (words{"茶", "緑"}));
  EXPECT_EQ(search_words("«Prix» 10€"), (words{"prix", "10"}));
  EXPECT_EQ(search_words("Tee 🎉 Party"), (words{"tee", "party"}));
}

TEST(SearchWords, test_invisible_format_characters_neither_join_nor_split_words) {
  EXPECT_EQ(search_words("co\u00ADoperative"), (words{"cooperative"})); // soft hyphen
  EXPECT_EQ(search_words("\u0645\u06CC\u200C\u062E\u0648\u0627\u0645"),
            search_words("\u0645\u06CC\u062E\u0648\u0627\u0645")); // a Persian zero-width non-joiner
  EXPECT_EQ(search_words("\uFEFFTea\u200E"), (words{"tea"})); // a BOM, a direction mark
  EXPECT_EQ(search_words("tea\u200Bcup"), (words{"tea", "cup"})); // a zero-width space separates
}

TEST(SearchWords, test_marks_and_numbers_stay_in_their_word) {
  EXPECT_EQ(search_words("cafe\u0301"), (words{"cafe\u0301"})); // a combining acute
  EXPECT_EQ(search_words("हिन्दी"), (words{"हिन्दी"}));             // virama and vowel signs
  EXPECT_EQ(search_words("iPhone 15 ①"), (words{"iphone", "15", "①"}));
  EXPECT_EQ(search_words("٣ قمصان"), (words{"٣", "قمصان"}));
}

TEST(SearchWords, test_bytes_that_are_not_utf8_are_kept_and_nothing_breaks) {
  EXPECT_EQ(search_words("ab\xFF" "cd"), (words{"ab\xFF" "cd"}));
  EXPECT_EQ(search_words("AB\xC3"), (words{"ab\xC3"}));         // cut short
  EXPECT_EQ(search_words("\xC0\xAF x"), (words{"\xC0\xAF", "x"})); // an overlong '/'
  EXPECT_EQ(search_words("\xED\xA0\x80"), (words{"\xED\xA0\x80"})); // a surrogate
  EXPECT_EQ(search_words("\xF4\x90\x80\x80"), (words{"\xF4\x90\x80\x80"})); // past U+10FFFF
  EXPECT_EQ(search_words("\x80\x80 A"), (words{"\x80\x80", "a"}));
}
